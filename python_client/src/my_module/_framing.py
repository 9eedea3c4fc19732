"""Length-prefixed frames (a big-endian u32 length N, then N bytes of JSON) over the worker's pipes: a reader of
frames for the connection's reader thread, and a whole-buffer write for its writer thread, which gives up only when
told the peer stalled."""

from __future__ import annotations

import os
import select
import struct
import time
from typing import Callable, Optional, Union

from ._protocol import FRAME_HEADER_BYTES

_HEADER = struct.Struct("!I")
assert _HEADER.size == FRAME_HEADER_BYTES
_BIG_BODY = 1 << 16  # bodies this long are read straight into a buffer of their size
frame_header = _HEADER.pack  # the 4-byte header announcing a body of that many bytes

Body = Union[bytes, bytearray]


class TruncatedFrameError(EOFError):
    """The stream ended inside a frame (after part of its header or body)."""


class OversizedFrameError(ValueError):
    """A frame header announced more bytes than the reader accepts."""

    def __init__(self, frame_bytes: int, max_frame_bytes: int) -> None:
        super().__init__(f"frame header announces {frame_bytes} bytes, over the {max_frame_bytes}-byte limit")
        self.frame_bytes, self.max_frame_bytes = frame_bytes, max_frame_bytes


class WriteStalled(Exception):
    """The peer accepted no byte for too long in the middle of a write (the stream is lost)."""


class FrameReader:
    """Frames from a pipe's fd, for one reading thread: reads in big pieces, a big body straight into its buffer."""

    def __init__(self, fd: int, max_frame_bytes: int) -> None:
        self.fd, self.max_frame_bytes = fd, max_frame_bytes
        self._buf = bytearray()  # bytes read past the last frame taken (no body in progress)
        self._body: Optional[bytearray] = None  # a big body being filled in place, to _filled
        self._filled = 0

    def take(self) -> Optional[Body]:
        """A whole frame's body if one is buffered (no I/O), else None."""
        body = self._body
        if body is not None:
            if self._filled < len(body):
                return None
            self._body = None
            return body
        buf = self._buf
        if len(buf) < FRAME_HEADER_BYTES:
            return None
        (length,) = _HEADER.unpack_from(buf)
        if length > self.max_frame_bytes:
            raise OversizedFrameError(length, self.max_frame_bytes)
        end = FRAME_HEADER_BYTES + length
        if len(buf) >= end:
            small = bytes(buf[FRAME_HEADER_BYTES:end])
            del buf[:end]
            return small
        if length >= _BIG_BODY:
            self._body, self._filled = bytearray(length), len(buf) - FRAME_HEADER_BYTES
            self._body[:self._filled] = buf[FRAME_HEADER_BYTES:]
            buf.clear()
        return None

    def fill(self) -> Optional[Body]:
        """Read once (blocking), then :meth:`take`; ``EOFError`` at the end of the stream."""
        body = self._body
        if body is not None:
            with memoryview(body) as view:
                n = os.readv(self.fd, [view[self._filled:]])
            if n == 0:
                raise TruncatedFrameError(f"stream ended after {self._filled} of {len(body)} body bytes")
            self._filled += n
            return self.take()
        data = os.read(self.fd, _BIG_BODY)
        if not data:
            raise TruncatedFrameError(f"stream ended inside a frame ({len(self._buf)} bytes of it read)") if self._buf else EOFError()
        self._buf += data
        return self.take()


def write_all(fd: int, data: bytes, stalled: Callable[[float], bool]) -> None:
    """All of ``data`` to the non-blocking ``fd``, waiting for room; :class:`WriteStalled` once ``stalled(s)`` is true
    of the ``s`` seconds without progress (asked at most every 0.1 s). POLLERR/POLLHUP wake the wait: the next write
    raises ``BrokenPipeError``."""
    view, written, idle_since, poller = memoryview(data), 0, time.monotonic(), None
    while written < len(view):
        try:
            n = os.write(fd, view[written:])
        except BlockingIOError:
            n = 0
        if n:
            written, idle_since = written + n, time.monotonic()
            continue
        if poller is None:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
        if not poller.poll(100) and stalled(time.monotonic() - idle_since):
            raise WriteStalled(f"the worker accepted no input for {time.monotonic() - idle_since:.1f} s "
                               f"({written} of {len(view)} bytes written)")
