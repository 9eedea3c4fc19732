"""Framing functions on their own: exact reads, EOF handling, bounded writes."""

from __future__ import annotations

import io
import os
import time

import pytest

from my_module._framing import (
    OversizedFrameError,
    TruncatedFrameError,
    WriteTimeout,
    frame_header,
    read_frame,
    write_frame,
)


class Trickle(io.RawIOBase):
    """A raw stream that returns at most one byte per read (worst-case pipe splits)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._pos >= len(self._data):
            return 0
        buffer[0] = self._data[self._pos]
        self._pos += 1
        return 1


def frames(*bodies: bytes) -> bytes:
    return b"".join(frame_header(len(b)) + b for b in bodies)


def test_frame_header_is_big_endian_u32() -> None:
    assert frame_header(1) == b"\x00\x00\x00\x01"
    assert frame_header(0x01020304) == b"\x01\x02\x03\x04"


def test_reads_glued_frames_split_one_byte_at_a_time() -> None:
    stream = io.BufferedReader(Trickle(frames(b"{}", b"", b"[1,2,3]")))
    assert read_frame(stream, 100) == b"{}"
    assert read_frame(stream, 100) == b""
    assert read_frame(stream, 100) == b"[1,2,3]"
    assert read_frame(stream, 100) is None  # clean EOF between frames


@pytest.mark.parametrize("cut", [1, 3, 5, 8])
def test_eof_inside_a_frame_is_truncation(cut: int) -> None:
    data = frames(b"[1,2,3]")[:cut]
    with pytest.raises(TruncatedFrameError):
        read_frame(io.BufferedReader(Trickle(data)), 100)


def test_oversized_header_is_refused_without_reading_the_body() -> None:
    stream = io.BytesIO(b"this is not a frame")
    with pytest.raises(OversizedFrameError) as info:
        read_frame(stream, 1 << 20)
    assert info.value.frame_bytes == int.from_bytes(b"this", "big")
    assert stream.tell() == 4


def test_write_times_out_when_nobody_reads_and_nothing_was_sent() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)
        filler = b"x" * (1 << 20)
        while True:  # fill the pipe
            try:
                os.write(write_fd, filler)
            except BlockingIOError:
                break
        started = time.monotonic()
        with pytest.raises(WriteTimeout):
            write_frame(write_fd, b"frame", time.monotonic() + 0.2, stall_grace=1.0)
        assert 0.15 < time.monotonic() - started < 1.0
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_write_of_a_big_frame_completes_while_the_reader_drains() -> None:
    import threading

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    data = bytes(range(256)) * 40_000  # 10 MB, far more than a pipe holds
    received = bytearray()

    def drain() -> None:
        while True:
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                return
            received.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    write_frame(write_fd, data, time.monotonic() + 20, stall_grace=1.0)
    os.close(write_fd)
    t.join(timeout=20)
    os.close(read_fd)
    assert bytes(received) == data
