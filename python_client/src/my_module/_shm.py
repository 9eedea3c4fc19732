"""Shared-memory segments (protocol 1.2, Linux): memfds (in no directory, freed with their last fd and mapping), mode
0600, preallocated (a memory limit fails here, not as a SIGBUS later), reused; ``count`` u32s, then their squares."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import secrets
import sys
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Union

from . import _convert

GRAIN = 1 << 16  # segment sizes are rounded up to a multiple of this: close sizes share one
PIECE = 1 << 14  # numbers converted per C call (under 1 ms): other threads get the GIL between


class ShmUnavailable(Exception):
    """Shared memory cannot be set up (no memfd, a memory limit, a forked child...)."""


def new_prefix() -> str:
    """A fresh name prefix for ``initialize``'s ``shmPrefix``: 128 random bits."""
    return "my_module-" + secrets.token_hex(16) + "-"


def squares_offset(count: int) -> int:
    """Where the squares start: 4 * count rounded up to a multiple of 8."""
    return 8 * ((count + 1) // 2)


class Segment:
    """One mapped memfd; ``fd`` stays open for the worker to reach it through procfs."""

    def __init__(self, name: str, size: int) -> None:
        self.map: Optional[mmap.mmap] = None
        self.name, self.size, self.fd = name, size, -1
        try:
            self.fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.fchmod(self.fd, 0o600)
            os.ftruncate(self.fd, size)
            os.posix_fallocate(self.fd, 0, size)
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)  # no shrinking: no SIGBUS in a worker
            self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            if self.fd >= 0:
                os.close(self.fd)
            elif os.path.isdir("/proc/self/fd"):  # an interrupt after memfd_create returned, before its fd was kept
                for fd in os.listdir("/proc/self/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/self/fd/{fd}") == f"/memfd:{name} (deleted)":
                            os.close(int(fd))
            raise

    def write(self, numbers: Any, *, pieces: bool = False) -> Dict[str, Any]:
        """``numbers`` (ints, or a u32 buffer) copied in, by PIECE if ``pieces``; the ``numbersShm`` reference."""
        if isinstance(numbers, (list, tuple)):
            convert: Callable[[Any], Any] = _convert.u32_array
        else:
            convert, numbers = (lambda piece: piece), memoryview(numbers)
            if numbers.format.lstrip("@=<") != "I" or numbers.ndim != 1 or not numbers.c_contiguous:
                raise TypeError(f"not a contiguous native u32 buffer (format {numbers.format!r})")
        count = len(numbers)
        if squares_offset(count) + 8 * count > self.size or self.map is None:
            raise ValueError(f"{count} numbers do not fit a segment of {self.size} bytes")
        parts = ((i, numbers[i:i + PIECE]) for i in range(0, count, PIECE)) if pieces else [(0, numbers)]
        for i, part in parts:
            self.map[4 * i:4 * (i + len(part))] = convert(part)
        return {"pid": os.getpid(), "fd": self.fd, "name": self.name, "count": count}

    def squares(self, count: int, into: Optional[memoryview] = None) -> Union[List[int], bool]:
        """The ``count`` squares the worker wrote, as a list of ints built in pieces; or copied to ``into`` (True)."""
        assert self.map is not None
        start, out = squares_offset(count), []  # type: int, List[int]
        with memoryview(self.map) as whole:
            if into is not None:
                into[:] = whole[start:start + 8 * count]  # one memcpy
                return True
            wide = whole[start:start + 8 * count].cast("Q")
            for i in range(0, count, PIECE):
                out += wide[i:i + PIECE].tolist()
            wide.release()
        return out

    def __del__(self) -> None:  # dropped unreleased (an interrupt between acquire and its owner)
        self.close()

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
            os.close(self.fd)


class Pool:
    """Segments for one connection; thread-safe. ``release`` one only once the worker cannot write it any more."""

    def __init__(self, prefix: Optional[str] = None, *, max_idle: int = 8, max_idle_bytes: int = 256 << 20) -> None:
        self.prefix = new_prefix() if prefix is None else prefix
        self.max_idle, self.max_idle_bytes = max_idle, max_idle_bytes
        self._idle: List[Segment] = []
        self._lock, self._made, self._pid, self.closed = threading.Lock(), 0, os.getpid(), False
        self._all: "weakref.WeakSet[Segment]" = weakref.WeakSet()  # for close(everything=True)

    def acquire(self, count: int) -> Segment:
        """An idle segment holding ``count`` numbers and their squares, or a new one."""
        need = squares_offset(count) + 8 * count
        with self._lock:
            if self.closed or os.getpid() != self._pid or sys.byteorder != "little":
                raise ShmUnavailable("closed, forked or big-endian: no shared memory here")
            best = min((s for s in self._idle if s.size >= need), key=lambda s: s.size, default=None)
            if best is not None:
                self._idle.remove(best)
                return best
            self._made += 1
            name = f"{self.prefix}{self._made}"
        try:
            segment = Segment(name, max(GRAIN, -(-need // GRAIN) * GRAIN))
            with self._lock:  # close(everything=True) lists the set under the lock
                self._all.add(segment)
            return segment
        except (OSError, AttributeError, ValueError, OverflowError) as e:
            raise ShmUnavailable(f"shared memory segment of {need} bytes: {e}") from e

    def release(self, segment: Segment) -> None:
        """To the idle list (the oldest beyond its bounds closed); closed, forked, too big: closed."""
        with self._lock:
            if self.closed or os.getpid() != self._pid or segment.size > self.max_idle_bytes:
                dropped = [segment]
            else:
                self._idle.append(segment)
                dropped = []
                while len(self._idle) > self.max_idle or sum(s.size for s in self._idle) > self.max_idle_bytes:
                    dropped.append(self._idle.pop(0))
        for s in dropped:
            s.close()

    def close(self, everything: bool = False) -> None:
        """Free the idle segments now, those in use as they come back; ``everything``: all (the worker must be gone)."""
        with self._lock:
            self.closed = True
            dropped, self._idle = list(self._all) if everything else self._idle, []
        for s in dropped:
            s.close()
