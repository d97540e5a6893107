"""Figures the reliability suite measures, printed at the end of the run (`-s`) and written
to .data/reliability/figures-<worker>.json for docs/reliability.md."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.support import PROJECT_ROOT

FIGURES: dict[str, Any] = {}
# One file per xdist worker, so parallel workers never overwrite each other's figures.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
FIGURES_FILE = PROJECT_ROOT / ".data" / "reliability" / f"figures-{_WORKER}.json"


def record(name: str, **values: Any) -> None:
    FIGURES[name] = values
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=2, sort_keys=True, default=str))
