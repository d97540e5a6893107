"""Figures the reliability suite measures, printed at the end of the run (`-s`) and written
to .data/reliability/figures.json for docs/reliability.md."""

from __future__ import annotations

import json
from typing import Any

from tests.support import PROJECT_ROOT

FIGURES: dict[str, Any] = {}
FIGURES_FILE = PROJECT_ROOT / ".data" / "reliability" / "figures.json"


def record(name: str, **values: Any) -> None:
    FIGURES[name] = values
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=2, sort_keys=True, default=str))
