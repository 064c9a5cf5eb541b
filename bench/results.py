"""Where the benchmarks keep their figures: a JSON file per benchmark and run.

Under bench/results/ (ignored by git), named after the run's start and the benchmark, so
that the files of one run sort together and a later run adds files rather than replacing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

RESULTS: Final = Path(__file__).parent / "results"


def run_stamp() -> str:
    """The start of a run, for the names of its files: local time, to the second."""
    return datetime.now().strftime("%Y-%m-%dT%H-%M-%S")


def write_result(stamp: str, benchmark: str, figures: Mapping[str, Any]) -> Path:
    """Write `figures` to bench/results/<stamp>-<benchmark>.json; its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stamp}-{benchmark}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return path
