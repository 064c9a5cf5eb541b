"""The engine's keypair file: made when missing, in the Solana CLI's format, never replaced."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from solders.keypair import Keypair

from orderengine.errors import OrderEngineError
from orderengine.wallet import InvalidKeypair, load_or_create_keypair


def test_a_missing_keypair_is_created_private_with_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "data" / "wallet" / "keypair.json"

    keypair = load_or_create_keypair(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in path.parent.iterdir()] == ["keypair.json"]
    values = json.loads(path.read_text())
    assert values == list(bytes(keypair))
    assert Keypair.from_bytes(bytes(values[:32]) + bytes(keypair.pubkey())) == keypair


def test_the_keypair_is_the_same_when_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "keypair.json"

    first = load_or_create_keypair(path)
    again = load_or_create_keypair(path)

    assert again == first
    assert again.pubkey() == first.pubkey()


def test_a_keypair_written_by_the_solana_cli_is_read(tmp_path: Path) -> None:
    keypair = Keypair.from_seed(bytes(range(32)))
    path = tmp_path / "id.json"
    path.write_text(json.dumps(list(bytes(keypair))))

    assert load_or_create_keypair(path) == keypair


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json",
        '{"secret": [1, 2, 3]}',
        json.dumps(list(range(32))),
        json.dumps([256] * 64),
        json.dumps([True] * 64),
        # A secret key with the public key of another keypair.
        json.dumps(
            list(bytes(Keypair.from_seed(bytes(32))))[:32]
            + list(bytes(Keypair.from_seed(bytes([1] * 32)).pubkey()))
        ),
    ],
)
def test_a_file_that_is_not_a_keypair_is_an_error_and_is_left_alone(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "keypair.json"
    path.write_text(content)

    with pytest.raises(InvalidKeypair, match="is not a Solana keypair") as raised:
        load_or_create_keypair(path)

    assert isinstance(raised.value, OrderEngineError)
    assert str(path) in raised.value.message
    assert path.read_text() == content


def test_a_keypair_path_where_no_file_can_be_made_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")

    with pytest.raises(InvalidKeypair, match="none can be made there"):
        load_or_create_keypair(tmp_path / "a-file" / "keypair.json")


def test_a_keypair_path_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "keypair.json").mkdir()

    with pytest.raises(InvalidKeypair, match="cannot be read"):
        load_or_create_keypair(tmp_path / "keypair.json")
