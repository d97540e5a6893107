"""`app` and `python -m app`: the command line (app/cli.py), started with the collector off."""

from __future__ import annotations

import gc


def main() -> None:
    # Starting the server makes about 160,000 objects that live as long as the process (FastAPI,
    # SQLAlchemy and pydantic build them at import and at app creation), and the collector
    # walked them over and over while they were made: about a quarter of the cold start. So
    # collection is off before the imports: every command but `serve` turns it back on at once,
    # and the server's lifespan does once start-up is over, after `gc.freeze()`.
    gc.disable()
    from app.cli import main as run

    run()


if __name__ == "__main__":
    main()
