"""Length-prefixed frames (a big-endian u32 length N, then N bytes of JSON) over the worker's pipes; writing
goes to a non-blocking pipe, so every wait for room is bounded by a deadline."""

from __future__ import annotations

import math
import os
import select
import struct
import time
from typing import Callable, Optional, Sequence, Union

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


class WriteTimeout(Exception):
    """The deadline passed before any byte of the frame could be written (nothing was sent)."""


class WriteStalled(Exception):
    """The peer accepted no byte for too long in the middle of a frame (the stream is lost)."""


class FrameReader:
    """Frames from a pipe's fd; a frame begun by one thread (which gave up at its deadline) is finished by the next."""

    def __init__(self, fd: int, max_frame_bytes: int) -> None:
        self.fd, self.max_frame_bytes = fd, max_frame_bytes
        self._buf = bytearray()  # bytes read past the last frame taken (no body in progress)
        self._body: Optional[bytearray] = None  # a big body being filled in place, to _filled
        self._filled = 0
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

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

    def wait(self, deadline: Optional[float]) -> bool:
        """Wait until there is something to read; False if ``deadline`` passed first."""
        return bool(self._poller.poll(None if deadline is None else max(0, math.ceil((deadline - time.monotonic()) * 1000))))

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


def write_frame(fd: int, body: Sequence[bytes], deadline: Optional[float], stall_grace: float,
                on_wait: Callable[[], None] = lambda: None) -> None:
    """A frame of ``body`` to the non-blocking ``fd``, room waited for until ``deadline`` (``on_wait()`` first); a frame
    begun is finished while the peer reads, abandoned after ``stall_grace`` s with no progress (:class:`WriteStalled`)."""
    # One buffer (joining costs ~1% of encoding a chunk): each write takes what the pipe has room for.
    view = memoryview(b"".join([_HEADER.pack(sum(map(len, body))), *body]))
    written, total, last_progress, poller = 0, len(view), -math.inf, None  # -inf: only the deadline counts
    while written < total:
        try:
            n = os.write(fd, view[written:])
        except BlockingIOError:
            n = 0
        if n:
            written += n
            last_progress = time.monotonic()
            continue
        wait = math.inf if deadline is None else max(deadline, last_progress + stall_grace) - time.monotonic()
        if wait <= 0 and written == 0:
            raise WriteTimeout("timed out waiting for the worker to read its input")
        if wait <= 0:
            raise WriteStalled(f"the worker accepted no input for {stall_grace:g} s "
                               f"in the middle of a frame ({written} of {total} bytes written)")
        if poller is None:
            on_wait()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
        # POLLERR/POLLHUP also wake us: the next os.write then raises BrokenPipeError.
        poller.poll(None if wait == math.inf else max(1, math.ceil(wait * 1000)))
