"""What a client may send on a socket, checked frame by frame before aiohttp reads it.

aiohttp's reader of a server socket takes frames as they come and checks little of what RFC
6455 asks of a client. Three things it lets through, each checked here, on the frames' headers
alone, before the bytes reach it (`ClientFrames`):

- a frame not masked: a server must fail the connection (section 5.1). Closed with 1002;
- a close frame with a code no endpoint may send (section 7.4: below 1000, 1004 to 1006, 1015
  to 2999, 5000 and above; aiohttp refuses those below 3000 only). Closed with 1002;
- frames that make no message: a message's fragments, empty or not, are taken in until the
  message is whole, out of reach of what the socket's reader allows per message
  (`sockets.until_client_leaves`), so that an endless message of empty fragments kept the
  engine's core busy. A client sends at most `FRAMES_PER_MINUTE` frames, after a burst of
  `FRAMES_BURST`, every kind counted; one that sends more is closed with 1008.

And a frame must come whole within a deadline (the socket's heartbeat period) once begun:
one trickled a byte at a time would hold off the heartbeat for ever. Closed with 1008.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, NamedTuple, Protocol

from aiohttp import WebSocketError, WSCloseCode

from orderengine.limiter import TokenBucket

FRAMES_PER_MINUTE: Final = 6000
"""Frames a client may send a minute on average: ten times the messages its socket's reader
takes, so that only a flood meets it."""
FRAMES_BURST: Final = 600

MASKED: Final = 0x80
"""The second byte's flag saying the payload is masked, as every client's must be."""
LENGTH: Final = 0x7F
"""The second byte's bits giving the payload's length, or saying where it is."""
EXTENDED: Final = {126: 2, 127: 8}
"""Bytes of the extended length that follow a length field of 126 or 127."""
OPCODE: Final = 0x0F
CLOSE: Final = 0x8
MASK_BYTES: Final = 4
CODE_BYTES: Final = 2
LONGEST_HEAD: Final = 2 + 8 + MASK_BYTES + CODE_BYTES
"""The most bytes read before a frame can be judged: its header, and a close frame's code."""

SENDABLE_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
) | frozenset(range(3000, 5000))
"""Codes an endpoint may put in a close frame (RFC 6455 section 7.4, and IANA's registry)."""


class Reader(Protocol):
    """What aiohttp's protocol feeds a socket's bytes to: its `WebSocketReader`."""

    def feed_data(self, data: bytes) -> tuple[bool, bytes]: ...

    def feed_eof(self) -> None: ...


class FrameHead(NamedTuple):
    """A frame's header, as far as judging the frame needs."""

    size: int
    """Its bytes before the rest of the payload: the header, and a close frame's code."""
    remaining: int
    """Bytes of the payload after those."""
    masked: bool
    close_code: int | None


def frame_head(data: bytes) -> FrameHead | None:
    """The frame `data` starts with, once enough of it is there to judge; None until then."""
    if len(data) < 2:
        return None
    masked = bool(data[1] & MASKED)
    extended = EXTENDED.get(data[1] & LENGTH, 0)
    size = 2 + extended + (MASK_BYTES if masked else 0)
    if len(data) < size:
        return None
    length = int.from_bytes(data[2 : 2 + extended], "big") if extended else data[1] & LENGTH
    if data[0] & OPCODE != CLOSE or length < CODE_BYTES:
        return FrameHead(size, length, masked, None)
    if len(data) < size + CODE_BYTES:
        return None
    code = int.from_bytes(data[size : size + CODE_BYTES], "big")
    if masked:
        code ^= int.from_bytes(data[size - MASK_BYTES : size - MASK_BYTES + CODE_BYTES], "big")
    return FrameHead(size + CODE_BYTES, length - CODE_BYTES, masked, code)


class ClientFrames:
    """Stands before a server socket's reader: sees each frame's header, then passes the bytes.

    A frame that breaks a rule fails the socket with `fail`, as aiohttp's reader fails it
    for its own checks: the error goes to the socket's messages, whose `receive` closes the
    socket with the error's code, and nothing more is read.
    """

    def __init__(
        self,
        reader: Reader,
        fail: Callable[[WebSocketError], None],
        allowance: TokenBucket,
        frame_deadline_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._fail = fail
        self._allowance = allowance
        self._deadline_s = frame_deadline_s
        self._clock = clock
        self._head = b""
        """The start of a frame whose header has not all come yet."""
        self._skip = 0
        """Bytes of the current frame's payload still to come."""
        self._due: float | None = None
        """When the frame begun must have come whole; None between frames."""
        self._failed = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        error = self._late() or self._breach(bytes(data))
        if error is not None:
            self._failed = True
            self._fail(error)
            return True, b""
        return self._reader.feed_data(data)

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    def _late(self) -> WebSocketError | None:
        """A frame begun that has not come whole in time: its client trickles it.

        Every byte that comes holds off aiohttp's heartbeat, whose ping would drop a client
        that no longer answers: a client sending a frame a byte now and then would stay
        for ever, unpinged.
        """
        if self._due is None or self._clock() <= self._due:
            return None
        return WebSocketError(
            WSCloseCode.POLICY_VIOLATION, f"a frame took over {self._deadline_s:g} s to come"
        )

    def _breach(self, data: bytes) -> WebSocketError | None:
        """The first rule the frames in `data` break, following on from the bytes before."""
        at = 0
        while at < len(data):
            if self._skip:
                step = min(self._skip, len(data) - at)
                self._skip -= step
                at += step
                if not self._skip:
                    self._due = None
                continue
            if self._due is None:
                self._due = self._clock() + self._deadline_s
            known = self._head + data[at : at + LONGEST_HEAD]
            head = frame_head(known)
            if head is None:
                self._head = known
                return None
            at += head.size - len(self._head)
            self._head = b""
            self._skip = head.remaining
            if not self._skip:
                self._due = None
            error = self._judge(head)
            if error is not None:
                return error
        return None

    def _judge(self, head: FrameHead) -> WebSocketError | None:
        if not head.masked:
            return WebSocketError(WSCloseCode.PROTOCOL_ERROR, "a client's frames must be masked")
        if head.close_code is not None and head.close_code not in SENDABLE_CLOSE_CODES:
            return WebSocketError(
                WSCloseCode.PROTOCOL_ERROR, f"no endpoint may close with {head.close_code}"
            )
        if not self._allowance.take_at_once():
            return WebSocketError(WSCloseCode.POLICY_VIOLATION, "too many frames")
        return None
