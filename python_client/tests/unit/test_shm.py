"""The shared-memory segment pool (``my_module._shm``) on its own: a round trip through a
mapping with another process acting as the worker does (protocol 1.2: procfs, readlink,
fstat, mmap), reuse and bounds, privacy (0600, close-on-exec, unguessable names, nothing in
/dev/shm), nothing left after ``close()``, setup failures as ``ShmUnavailable``, fork."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
from array import array
from typing import Iterator, List

import pytest

from my_module import _shm

pytestmark = pytest.mark.skipif(
    not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"), reason="Linux memfd and procfs only"
)

# What a worker does with a numbersShm reference (the design's checks 3 to 5), in a child.
FAKE_WORKER = r"""
import array, json, mmap, os, stat, sys
ref = json.loads(sys.argv[1])
path = "/proc/%d/fd/%d" % (ref["pid"], ref["fd"])
want = "/memfd:" + ref["name"] + " (deleted)"
assert os.readlink(path) == want, os.readlink(path)
fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
st = os.fstat(fd)
count = ref["count"]
start = 8 * ((count + 1) // 2)
assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 == 0 and st.st_uid == os.geteuid()
assert st.st_size >= start + 8 * count and os.readlink("/proc/self/fd/%d" % fd) == want
import fcntl; assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK  # no SIGBUS: it cannot shrink
m = mmap.mmap(fd, start + 8 * count, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
os.close(fd)
numbers = memoryview(m)[:4 * count].cast("I").tolist()
m[start:start + 8 * count] = array.array("Q", [n * n for n in numbers]).tobytes()
m.close()
"""


@pytest.fixture
def pool() -> Iterator[_shm.Pool]:
    p = _shm.Pool()
    yield p
    p.close()


def serve(ref: dict) -> None:
    subprocess.run([sys.executable, "-c", FAKE_WORKER, json.dumps(ref)], check=True, timeout=30)


def maps_naming(name: str) -> List[str]:
    with open("/proc/self/maps") as f:
        return [line for line in f if "/memfd:" + name + " " in line]


def fds_naming(name: str) -> List[int]:
    found = []
    for entry in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{entry}") == f"/memfd:{name} (deleted)":
                found.append(int(entry))
        except OSError:  # the fd of the listing itself, gone by now
            pass
    return found


@pytest.mark.parametrize("kind", ["list", "tuple", "array", "list in pieces", "array in pieces"])
@pytest.mark.parametrize("count", [1, 2, 5, 8192, 3 * _shm.PIECE + 1])
def test_round_trip_through_another_process(pool: _shm.Pool, count: int, kind: str) -> None:
    numbers = [(i * 2654435761) % (1 << 32) for i in range(count)]
    numbers[-1] = (1 << 32) - 1
    segment = pool.acquire(count)
    assert segment.size >= _shm.squares_offset(count) + 8 * count
    given = {"list": numbers, "tuple": tuple(numbers), "array": array("I", numbers)}[kind.split()[0]]
    ref = segment.write(given, pieces=kind.endswith("pieces"))
    assert ref == {"pid": os.getpid(), "fd": segment.fd, "name": segment.name, "count": count}
    serve(ref)
    assert segment.squares(count) == [n * n for n in numbers]
    pool.release(segment)


def test_buffers_are_written_as_they_are(pool: _shm.Pool) -> None:
    numbers = array("I", [3, 0, (1 << 32) - 1, 12345])
    segment = pool.acquire(len(numbers))
    assert segment.write(memoryview(numbers))["count"] == 4
    assert segment.map is not None and array("I", segment.map[:16]).tolist() == numbers.tolist()
    serve(segment.write(numbers))  # an array itself too
    assert segment.squares(4) == [n * n for n in numbers]
    with pytest.raises(TypeError, match="u32"):
        segment.write(array("i", [1, 2]))
    with pytest.raises(TypeError, match="u32"):
        segment.write(memoryview(array("I", range(8)))[::2])
    pool.release(segment)


def test_bad_elements_and_overflow_write_nothing(pool: _shm.Pool) -> None:
    segment = pool.acquire(4)
    segment.write([9, 9, 9, 9])
    for bad, error in (([1, -1], OverflowError), ([1, 1 << 32], OverflowError), ([1, "2"], TypeError)):
        with pytest.raises(error):
            segment.write(bad)
    assert segment.map is not None and array("I", segment.map[:16]).tolist() == [9, 9, 9, 9]
    with pytest.raises(ValueError, match="do not fit"):
        segment.write([1] * (segment.size // 12 + 1))
    pool.release(segment)


def test_a_released_segment_is_reused(pool: _shm.Pool) -> None:
    first = pool.acquire(10_000)
    pool.release(first)
    again = pool.acquire(9_000)  # smaller: the same segment
    assert again is first and again.map is not None
    other = pool.acquire(10_000)  # the first is in use: a new one
    assert other is not first and other.name != first.name
    pool.release(again)
    pool.release(other)
    bigger = pool.acquire(10 * first.size)  # none is big enough: a new, bigger one
    assert bigger not in (first, other) and bigger.size >= 10 * first.size
    pool.release(bigger)


@pytest.mark.parametrize("big_first", [True, False])
def test_the_smallest_idle_segment_that_fits_is_taken(pool: _shm.Pool, big_first: bool) -> None:
    big, small = pool.acquire(1_000_000), pool.acquire(10_000)
    for s in (big, small) if big_first else (small, big):
        pool.release(s)
    assert pool.acquire(5) is small
    assert pool.acquire(5) is big


def test_idle_segments_are_bounded_in_number_and_bytes() -> None:
    pool = _shm.Pool(max_idle=2, max_idle_bytes=3 * _shm.GRAIN)
    try:
        segments = [pool.acquire(10) for _ in range(4)]
        for s in segments:
            pool.release(s)
        assert pool._idle == segments[2:]  # the oldest were closed
        assert segments[0].map is None and not fds_naming(segments[0].name)
        huge = pool.acquire(_shm.GRAIN // 12 + 1)  # 12 B a number: 2 grains, 1 more than fit
        pool.release(huge)
        assert pool._idle == [segments[3], huge]
        assert sum(s.size for s in pool._idle) <= 3 * _shm.GRAIN
        alone = _shm.Pool(max_idle_bytes=_shm.GRAIN)
        too_big = alone.acquire(_shm.GRAIN)
        alone.release(too_big)  # alone beyond the byte bound: closed at once
        assert alone._idle == [] and too_big.map is None
    finally:
        pool.close()


def test_segments_are_private_and_close_on_exec(pool: _shm.Pool) -> None:
    segment = pool.acquire(100)
    assert os.fstat(segment.fd).st_mode & 0o777 == 0o600
    assert not os.get_inheritable(segment.fd)
    # A child that inherits every inheritable fd (close_fds=False) still has not this one.
    seen = subprocess.run(
        [sys.executable, "-c", "import os, sys\ntry:\n print(os.readlink('/proc/self/fd/' + sys.argv[1]))\n"
         "except OSError:\n print('none')", str(segment.fd)],
        close_fds=False, check=True, capture_output=True, text=True, timeout=30,
    ).stdout.strip()
    assert "memfd:" not in seen, seen
    pool.release(segment)


def test_segments_are_sealed_against_shrinking(pool: _shm.Pool) -> None:
    # A worker maps S + 8C bytes after its fstat: a shrink after that would SIGBUS it.
    segment = pool.acquire(100)
    seals = fcntl.fcntl(segment.fd, fcntl.F_GET_SEALS)
    assert seals & fcntl.F_SEAL_SHRINK
    with pytest.raises(PermissionError) as caught:
        os.ftruncate(segment.fd, segment.size - 8)
    assert caught.value.errno == errno.EPERM and os.fstat(segment.fd).st_size == segment.size
    pool.release(segment)


def test_names_carry_the_prefix_and_128_random_bits() -> None:
    a, b = _shm.new_prefix(), _shm.new_prefix()
    assert a != b and a.startswith("my_module-") and a.endswith("-") and len(a) == len("my_module--") + 32
    pool = _shm.Pool(a)
    try:
        names = [pool.acquire(1).name for _ in range(3)]
        assert len(set(names)) == 3 and all(n.startswith(a) for n in names)
        assert all(len(n) <= 249 and set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-.") for n in names)
        assert _shm.Pool().prefix.startswith("my_module-")
    finally:
        pool.close()


def test_nothing_is_ever_in_dev_shm() -> None:
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    pool = _shm.Pool()
    segment = pool.acquire(200_000)
    serve(segment.write(list(range(200_000))))
    after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert not {n for n in after - before if pool.prefix in n or "my_module" in n}
    pool.release(segment)
    pool.close()


def test_close_leaves_no_fd_and_no_mapping() -> None:
    pool = _shm.Pool()
    kept, in_use = pool.acquire(50_000), pool.acquire(50_000)
    pool.release(kept)
    names = [kept.name, in_use.name]
    assert all(fds_naming(n) and maps_naming(n) for n in names)  # the checks can see them
    pool.close()
    assert not fds_naming(kept.name) and not maps_naming(kept.name)
    assert fds_naming(in_use.name)  # in use: it stays until it comes back
    pool.release(in_use)
    assert not fds_naming(in_use.name) and not maps_naming(in_use.name)
    with pytest.raises(_shm.ShmUnavailable):
        pool.acquire(1)


def test_a_fallocate_failure_is_a_setup_error_and_leaks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    pool = _shm.Pool()
    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(_shm.ShmUnavailable, match="No space") as caught:
        pool.acquire(1000)
    assert isinstance(caught.value.__cause__, OSError)
    assert not fds_naming(pool.prefix + "1") and pool._idle == []
    monkeypatch.undo()
    pool.acquire(1000)  # the next call may try again
    pool.close()


def test_a_real_file_size_limit_is_a_setup_error() -> None:
    # RLIMIT_FSIZE in a child (Python ignores SIGXFSZ): ftruncate/fallocate fail with EFBIG.
    script = (
        "import resource, sys\nsys.path[:0] = sys.argv[1:]\nfrom my_module import _shm\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\npool = _shm.Pool()\n"
        "print(len(pool.acquire(1000).name) > 0)\n"
        "try:\n    pool.acquire(10_000_000)\nexcept _shm.ShmUnavailable as e:\n    print('unavailable', e)\n"
    )
    src = os.path.dirname(os.path.dirname(os.path.abspath(_shm.__file__)))
    out = subprocess.run([sys.executable, "-c", script, src], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "True" and lines[1].startswith("unavailable") and "too large" in lines[1], lines


def test_a_forked_child_does_not_use_the_parents_pool(pool: _shm.Pool) -> None:
    segment = pool.acquire(16)
    pool.release(segment)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            try:
                pool.acquire(16)
            except _shm.ShmUnavailable:
                pool.release(segment)  # not kept: the child's copy is closed
                code = 0 if segment.map is None else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"\x00"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert pool._idle == [segment] and segment.map is not None  # the parent's is untouched
    assert pool.acquire(16) is segment
    pool.release(segment)
