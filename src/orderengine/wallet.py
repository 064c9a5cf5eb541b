"""The engine's wallet: the keypair that signs every swap, kept in a file.

The file is in the Solana CLI's format (`solana-keygen new -o …` writes it, and the CLI reads
ours): a JSON array of the 64 bytes of the keypair, the secret key then the public key. An
engine that finds no file makes a new keypair and writes it, readable by its owner only, so
that the wallet outlives the process; an engine trading live never makes one, as a new
wallet holds nothing to trade (`load_keypair`). An existing file that is not a keypair is an
error, never replaced: it may be a wallet someone needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from solders.keypair import Keypair

from orderengine.errors import OrderEngineError

KEYPAIR_BYTES = 64


class InvalidKeypair(OrderEngineError):
    """The keypair file does not hold a Solana keypair, or cannot be read or made."""

    code = "invalid_keypair"


def load_keypair(path: Path) -> Keypair:
    """The keypair kept at `path`; a missing file is an error, as live trading needs funds."""
    text = _read(path)
    if text is None:
        raise InvalidKeypair(f"no keypair file at {path}")
    return _parse(path, text)


def load_or_create_keypair(path: Path) -> Keypair:
    """The keypair kept at `path`, created there (mode 0600, parents made) if missing."""
    text = _read(path)
    if text is not None:
        return _parse(path, text)
    try:
        return _create(path)
    except OSError as error:
        raise InvalidKeypair(
            f"no keypair file at {path}, and none can be made there: {error.strerror or error}"
        ) from error


def _read(path: Path) -> str | None:
    """The keypair file's text; None when there is no file (nor, maybe, its directory)."""
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise InvalidKeypair(f"the keypair file {path} cannot be read: {error.strerror}") from error


def _parse(path: Path, text: str) -> Keypair:
    why = f"{path} is not a Solana keypair file (a JSON array of {KEYPAIR_BYTES} numbers 0-255)"
    try:
        values = json.loads(text)
    except ValueError as error:
        raise InvalidKeypair(f"{why}: {error}") from error
    if (
        not isinstance(values, list)
        or len(values) != KEYPAIR_BYTES
        or not all(type(value) is int and 0 <= value <= 255 for value in values)
    ):
        raise InvalidKeypair(why)
    try:
        return Keypair.from_bytes(bytes(values))
    except ValueError as error:
        raise InvalidKeypair(f"{why}: its public key does not match its secret key") from error


def _create(path: Path) -> Keypair:
    """Write a new keypair to `path` whole, or read the one another engine wrote first.

    The keypair is written to a temporary file, then linked to `path`: a link never replaces
    a file, so of two engines starting at once one wins and the other reads its keypair, and
    a reader never sees a file half written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    keypair = Keypair()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(list(bytes(keypair)), file)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _parse(path, path.read_text())
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return keypair
