"""A client's frames, judged on their headers before aiohttp's reader takes the bytes.

The frames are built here as RFC 6455 (section 5.2) lays them out, and fed whole, in one
piece, or split at every byte: the judgement and the bytes passed on must not depend on how
the connection cut them up.
"""

from __future__ import annotations

import os
import struct

import pytest
from aiohttp import WebSocketError, WSCloseCode

from orderengine.client_frames import ClientFrames, FrameHead, frame_head
from orderengine.limiter import TokenBucket

TEXT, CONTINUATION, CLOSE, PING = 0x1, 0x0, 0x8, 0x9


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True) -> bytes:
    """One frame as a client sends it (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        head = bytes([first, mask_bit | len(payload)])
    elif len(payload) < 1 << 16:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", len(payload))
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", len(payload))
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[n % 4] for n, byte in enumerate(payload))


def closing(code: int) -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + b"bye")


class Reader:
    """aiohttp's reader as the frames see it: it takes in what it is fed."""

    def __init__(self) -> None:
        self.fed = b""
        self.ended = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.fed += data
        return False, b""

    def feed_eof(self) -> None:
        self.ended = True


class Messages:
    """The socket's messages as the frames see them: where a failure goes (`fail`)."""

    def __init__(self) -> None:
        self.errors: list[WebSocketError] = []

    def fail(self, error: WebSocketError) -> None:
        self.errors.append(error)


def checked(
    data: bytes, step: int | None = None, allowance: TokenBucket | None = None
) -> tuple[Reader, Messages, list[tuple[bool, bytes]]]:
    """`data` fed to `ClientFrames` in one piece, or `step` bytes at a time."""
    reader, messages = Reader(), Messages()
    frames = ClientFrames(reader, messages.fail, allowance or TokenBucket(6000, 600), 30)
    step = step or len(data)
    answers = [frames.feed_data(data[at : at + step]) for at in range(0, len(data), step)]
    return reader, messages, answers


def failure(messages: Messages) -> tuple[int, str]:
    assert len(messages.errors) == 1, messages.errors
    error = messages.errors[0]
    assert isinstance(error, WebSocketError)
    return error.code, str(error)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 300, 65535, 65536, 70000])
def test_a_header_is_read_whatever_the_payload_s_length(length: int) -> None:
    data = frame(TEXT, b"x" * length)
    extended = 0 if length < 126 else 2 if length < 1 << 16 else 8

    assert frame_head(data) == FrameHead(2 + extended + 4, length, True, None)
    assert all(frame_head(data[:cut]) is None for cut in range(2 + extended + 4))


def test_a_close_frame_is_judged_with_its_code_unmasked() -> None:
    assert frame_head(closing(4999)) == FrameHead(8, 3, True, 4999)
    assert frame_head(closing(4999)[:7]) is None, "its code is not all there yet"
    assert frame_head(frame(CLOSE)) == FrameHead(6, 0, True, None), "a close with no code"


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7])
def test_good_frames_pass_whole_however_they_are_cut(step: int | None) -> None:
    data = b"".join(
        [
            frame(TEXT, b'{"orderId": "x"}'),
            frame(PING, b"ping"),
            frame(TEXT, b"a" * 200, fin=False),
            frame(CONTINUATION, b"b" * 70000),
            frame(CONTINUATION, b"", fin=True),
            closing(1000),
        ]
    )

    reader, messages, answers = checked(data, step)

    assert reader.fed == data
    assert messages.errors == []
    assert all(answer == (False, b"") for answer in answers)


@pytest.mark.parametrize("step", [None, 1])
def test_a_frame_not_masked_fails_the_socket_with_1002(step: int | None) -> None:
    data = frame(TEXT, b"hello") + frame(TEXT, b"there", masked=False) + frame(TEXT, b"more")

    reader, messages, answers = checked(data, step)

    assert failure(messages) == (WSCloseCode.PROTOCOL_ERROR, "a client's frames must be masked")
    assert answers[-1] == (True, b""), "aiohttp's protocol is told to read no more"
    assert len(reader.fed) < len(data)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
def test_a_close_code_no_endpoint_may_send_fails_the_socket_with_1002(code: int) -> None:
    _, messages, _ = checked(closing(code), step=1)

    assert failure(messages) == (WSCloseCode.PROTOCOL_ERROR, f"no endpoint may close with {code}")


@pytest.mark.parametrize("code", [1000, 1001, 1008, 1014, 3000, 4000, 4999])
def test_a_close_code_an_endpoint_may_send_passes(code: int) -> None:
    data = closing(code)

    reader, messages, _ = checked(data)

    assert messages.errors == []
    assert reader.fed == data


def test_a_message_of_endless_empty_fragments_fails_the_socket_with_1008() -> None:
    allowance = TokenBucket(rate_per_minute=60, burst=100, clock=lambda: 0.0)
    start = frame(TEXT, b"x", fin=False)
    fragments = frame(CONTINUATION, b"", fin=False) * 150

    reader, messages, _ = checked(start + fragments, step=60, allowance=allowance)

    assert failure(messages) == (WSCloseCode.POLICY_VIOLATION, "too many frames")
    assert len(reader.fed) <= len(start) + 99 * len(frame(CONTINUATION, b"", fin=False))


def test_nothing_is_read_once_the_socket_has_failed() -> None:
    reader, messages = Reader(), Messages()
    frames = ClientFrames(reader, messages.fail, TokenBucket(6000, 600), 30)

    frames.feed_data(frame(TEXT, b"x", masked=False))
    later = frames.feed_data(frame(TEXT, b"y"))
    frames.feed_eof()

    assert later == (True, b"")
    assert reader.fed == b""
    assert len(messages.errors) == 1
    assert reader.ended


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_frame_trickled_past_its_deadline_fails_the_socket_with_1008() -> None:
    clock = Clock()
    reader, messages = Reader(), Messages()
    frames = ClientFrames(reader, messages.fail, TokenBucket(6000, 600), 30, clock=clock)
    slow = frame(TEXT, b"x" * 100)

    frames.feed_data(slow[:10])
    clock.now = 29.0
    frames.feed_data(slow[10:11])
    clock.now = 30.5
    late = frames.feed_data(slow[11:12])

    assert late == (True, b"")
    assert failure(messages) == (WSCloseCode.POLICY_VIOLATION, "a frame took over 30 s to come")


def test_time_between_frames_is_no_frame_s_time() -> None:
    clock = Clock()
    reader, messages = Reader(), Messages()
    frames = ClientFrames(reader, messages.fail, TokenBucket(6000, 600), 30, clock=clock)
    data = frame(PING, b"are you there") + frame(TEXT, b"x" * 100)

    for at in range(len(data)):
        clock.now = at * 0.5 if at < 19 else 3600 + at * 0.1  # an hour between the two
        frames.feed_data(data[at : at + 1])

    assert messages.errors == []
    assert reader.fed == data
