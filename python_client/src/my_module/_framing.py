"""How bytes move: length-prefixed frames over the worker's pipes, and nothing else.

A frame is a 4-byte unsigned big-endian length N, then N bytes of UTF-8 JSON. Reading is
blocking and exact (one reader thread owns the worker's stdout). Writing goes to a
non-blocking pipe so that every wait for room in the pipe can be bounded by a deadline.
"""

from __future__ import annotations

import math
import os
import select
import struct
import time
from typing import BinaryIO, Optional

from ._protocol import FRAME_HEADER_BYTES

_HEADER = struct.Struct("!I")
assert _HEADER.size == FRAME_HEADER_BYTES


def frame_header(body_length: int) -> bytes:
    """Return the 4-byte header announcing a body of ``body_length`` bytes."""
    return _HEADER.pack(body_length)


class TruncatedFrameError(EOFError):
    """The stream ended inside a frame (after part of its header or body)."""


class OversizedFrameError(ValueError):
    """A frame header announced more bytes than the reader accepts."""

    def __init__(self, frame_bytes: int, max_frame_bytes: int) -> None:
        super().__init__(
            f"frame header announces {frame_bytes} bytes, over the {max_frame_bytes}-byte limit"
        )
        self.frame_bytes = frame_bytes
        self.max_frame_bytes = max_frame_bytes


def read_frame(stream: BinaryIO, max_frame_bytes: int) -> Optional[bytes]:
    """Read one frame body from a buffered binary stream.

    Returns None at a clean end of stream (EOF between frames). Raises
    :class:`TruncatedFrameError` at EOF inside a frame and :class:`OversizedFrameError` when
    the header announces more than ``max_frame_bytes`` (the body is not read).
    """
    header = stream.read(FRAME_HEADER_BYTES)
    if not header:
        return None
    if len(header) < FRAME_HEADER_BYTES:
        raise TruncatedFrameError(f"stream ended after {len(header)} bytes of a frame header")
    (length,) = _HEADER.unpack(header)
    if length > max_frame_bytes:
        raise OversizedFrameError(length, max_frame_bytes)
    body = stream.read(length)
    if len(body) < length:
        raise TruncatedFrameError(f"stream ended after {len(body)} of {length} body bytes")
    return body


class WriteTimeout(Exception):
    """The deadline passed before any byte of the frame could be written (nothing was sent)."""


class WriteStalled(Exception):
    """The peer accepted no byte for too long in the middle of a frame.

    The stream cannot be resynchronised after a partial frame, so the caller must give up on
    the connection.
    """


def write_frame(fd: int, data: bytes, deadline: Optional[float], stall_grace: float) -> None:
    """Write all of ``data`` (a whole frame) to the non-blocking file descriptor ``fd``.

    Waits for room in the pipe until ``deadline`` (a ``time.monotonic()`` value; None: no
    limit). Once the first byte is written the frame is always finished, even past the
    deadline, as long as the peer keeps accepting bytes; it is abandoned only if the peer
    accepts nothing for ``stall_grace`` seconds after the deadline.

    Raises :class:`WriteTimeout` (nothing written), :class:`WriteStalled` (part written) and
    ``BrokenPipeError``/``OSError`` when the reading end is gone.
    """
    view = memoryview(data)
    total = len(view)
    written = 0
    last_progress = time.monotonic()
    poller = None
    while written < total:
        try:
            n = os.write(fd, view[written:])
        except BlockingIOError:
            n = 0
        if n:
            written += n
            last_progress = time.monotonic()
            continue
        if deadline is None:
            wait: Optional[float] = None
        else:
            limit = deadline if written == 0 else max(deadline, last_progress + stall_grace)
            wait = limit - time.monotonic()
            if wait <= 0:
                if written == 0:
                    raise WriteTimeout("timed out waiting for the worker to read its input")
                raise WriteStalled(
                    f"the worker accepted no input for {stall_grace:g} s "
                    f"in the middle of a frame ({written} of {total} bytes written)"
                )
        if poller is None:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
        # POLLERR/POLLHUP also wake us: the next os.write then raises BrokenPipeError.
        poller.poll(None if wait is None else max(1, math.ceil(wait * 1000)))


def try_write_small_frame(fd: int, data: bytes) -> bool:
    """Write a frame of at most PIPE_BUF bytes without blocking; return False if no room.

    POSIX makes a pipe write of at most PIPE_BUF bytes atomic, so on a non-blocking pipe it
    either writes the whole frame or nothing: the stream can never be left mid-frame.
    Raises ``OSError`` (e.g. ``BrokenPipeError``) when the reading end is gone.
    """
    assert len(data) <= select.PIPE_BUF
    try:
        os.write(fd, data)
    except BlockingIOError:
        return False
    return True
