"""Framing functions on their own: exact reads, EOF handling, whole writes that give up only when told."""

from __future__ import annotations

import os
import time
from typing import List

import pytest

from my_module._framing import (
    FrameReader,
    OversizedFrameError,
    TruncatedFrameError,
    WriteStalled,
    frame_header,
    write_all,
)


def frames(*bodies: bytes) -> bytes:
    return b"".join(frame_header(len(b)) + b for b in bodies)


def read_trickled(data: bytes, bodies: List[bytes]) -> None:
    """Feed ``data`` to a FrameReader one byte per read (worst-case pipe splits), collecting
    the bodies, then close the pipe and read once more (EOF)."""
    read_fd, write_fd = os.pipe()
    reader = FrameReader(read_fd, 100)
    try:
        for i in range(len(data)):
            os.write(write_fd, data[i:i + 1])
            body = reader.fill()
            while body is not None:
                bodies.append(body)
                body = reader.take()
        os.close(write_fd)
        write_fd = -1
        reader.fill()
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_frame_header_is_big_endian_u32() -> None:
    assert frame_header(1) == b"\x00\x00\x00\x01"
    assert frame_header(0x01020304) == b"\x01\x02\x03\x04"


def test_reads_glued_frames_split_one_byte_at_a_time() -> None:
    bodies: List[bytes] = []
    with pytest.raises(EOFError) as info:
        read_trickled(frames(b"{}", b"", b"[1,2,3]"), bodies)
    assert bodies == [b"{}", b"", b"[1,2,3]"]
    assert not isinstance(info.value, TruncatedFrameError)  # clean EOF between frames


@pytest.mark.parametrize("cut", [1, 3, 5, 8])
def test_eof_inside_a_frame_is_truncation(cut: int) -> None:
    with pytest.raises(TruncatedFrameError):
        read_trickled(frames(b"[1,2,3]")[:cut], [])


def test_oversized_header_is_refused_without_reading_the_body() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(read_fd, False)  # a reader waiting for the body would fail, not hang
        os.write(write_fd, b"this")  # the header alone: the body is never read
        with pytest.raises(OversizedFrameError) as info:
            FrameReader(read_fd, 1 << 20).fill()
        assert info.value.frame_bytes == int.from_bytes(b"this", "big")
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_write_nobody_reads_gives_up_only_when_told_it_stalled() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)
        filler = b"x" * (1 << 20)
        while True:  # fill the pipe
            try:
                os.write(write_fd, filler)
            except BlockingIOError:
                break
        asked = []
        started = time.monotonic()
        with pytest.raises(WriteStalled, match="0 of 5 bytes"):
            write_all(write_fd, b"frame", lambda idle: asked.append(idle) or idle >= 0.3)
        assert 0.25 < time.monotonic() - started < 1.5
        assert len(asked) >= 2 and asked == sorted(asked)  # asked again while nothing moves, idle time growing
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
    write_all(write_fd, frame_header(len(data)) + data, lambda idle: idle > 20)
    os.close(write_fd)
    t.join(timeout=20)
    os.close(read_fd)
    assert bytes(received) == frame_header(len(data)) + data
