"""What the engine reads into a signature's status and a refused send."""

from __future__ import annotations

from typing import Any

import pytest

from orderengine.venues.rpc import PREFLIGHT_FAILED, RpcError, SignatureStatus


@pytest.mark.parametrize(
    ("confirmation", "confirmations", "landed"),
    [
        ("confirmed", 3, True),
        ("finalized", None, True),
        ("processed", 0, False),
        (None, None, True),
        (None, 4, False),
    ],
    ids=["confirmed", "finalized", "processed", "rooted-on-an-older-node", "counted-not-rooted"],
)
def test_a_signature_has_landed_once_confirmed_or_rooted(
    confirmation: str | None, confirmations: int | None, landed: bool
) -> None:
    status = SignatureStatus(confirmation=confirmation, confirmations=confirmations, err=None)

    assert status.landed is landed


def preflight(err: Any, *, resent: bool = False) -> RpcError:
    error = {"code": PREFLIGHT_FAILED, "message": "simulation failed", "data": {"err": err}}
    return RpcError("sendTransaction", error, resent=resent)


def test_only_a_preflight_refusal_of_a_send_that_went_once_is_definite() -> None:
    refused = preflight({"InstructionError": [5, {"Custom": 6001}]})

    assert refused.refused_before_sending
    assert refused.program_error == {"InstructionError": [5, {"Custom": 6001}]}
    assert not preflight(
        {"InstructionError": [5, {"Custom": 1}]}, resent=True
    ).refused_before_sending
    assert not preflight("AlreadyProcessed").refused_before_sending
    unhealthy = RpcError("sendTransaction", {"code": -32005, "message": "node is behind"})
    assert not unhealthy.refused_before_sending
    assert unhealthy.program_error is None
