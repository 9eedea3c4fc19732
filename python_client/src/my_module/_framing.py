"""Length-prefixed frames (a big-endian u32 length N, then N bytes of JSON): a frame reader for the connection's
reader thread, and a whole write for its writer thread."""

from __future__ import annotations

import os
import select
import struct
import time
from typing import Callable, Optional, Union

from ._protocol import FRAME_HEADER_BYTES

_HEADER = struct.Struct("!I")
assert _HEADER.size == FRAME_HEADER_BYTES
_READ_BYTES = 1 << 16  # the least a read asks for
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
    """Frames from a pipe's fd, for one reading thread; a read takes what the frame in progress still needs."""

    def __init__(self, fd: int, max_frame_bytes: int) -> None:
        self.fd, self.max_frame_bytes = fd, max_frame_bytes
        self._buf = bytearray()  # bytes read past the last frame taken
        self._need = FRAME_HEADER_BYTES  # what the frame in progress takes in all, as far as known

    def take(self) -> Optional[Body]:
        """A whole frame's body if one is buffered (no I/O), else None."""
        buf = self._buf
        if len(buf) < FRAME_HEADER_BYTES:
            return None
        (length,) = _HEADER.unpack_from(buf)
        if length > self.max_frame_bytes:
            raise OversizedFrameError(length, self.max_frame_bytes)
        self._need = end = FRAME_HEADER_BYTES + length
        if len(buf) < end:
            return None
        body, self._need = buf[FRAME_HEADER_BYTES:end], FRAME_HEADER_BYTES  # a slice: one copy
        del buf[:end]
        return body

    def fill(self) -> Optional[Body]:
        """Read once (blocking), then :meth:`take`; ``EOFError`` at the end of the stream."""
        data = os.read(self.fd, max(_READ_BYTES, self._need - len(self._buf)))
        if not data:
            raise TruncatedFrameError(f"stream ended inside a frame ({len(self._buf)} bytes of it read)") if self._buf else EOFError()
        self._buf += data
        return self.take()


def write_all(fd: int, data: bytes, stalled: Callable[[float], bool]) -> None:
    """All of ``data`` to the non-blocking ``fd``; :class:`WriteStalled` once ``stalled(s)`` holds of ``s`` idle seconds
    (asked every 0.1 s). A closed pipe wakes the wait, and the next write raises BrokenPipeError."""
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
