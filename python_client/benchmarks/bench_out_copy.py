"""Copy the squares into ``out=``, or hand back the segment? The two costs, measured (issue 22).

Usage (from the repository root; standard library only, Linux: ``os.memfd_create``)::

    python python_client/benchmarks/bench_out_copy.py [--n 10000000] [--rounds 15]

With ``out=``, the client copies each chunk's squares from its shared-memory segment into the
caller's buffer (one ``memoryview`` slice assignment: a memcpy), and the pool reuses the segment
for the next call. The alternative is to return an array backed by the segment itself: no copy,
but the caller then holds the segment, so the next call needs a fresh one, whose pages the
kernel must allocate and zero on first touch (the worker maps it with ``MAP_POPULATE``). Per
``n`` squares (8 bytes each), interleaved rounds, medians:

* ``copy into a resident out``: the memcpy from a resident segment into an ``out`` written before
  (a caller reusing its buffer);
* ``copy into a fresh out``: the same into a new ``bytearray`` (its pages faulted by the copy:
  a caller allocating ``out`` per call, as ``np.empty`` does);
* ``fresh segment, populated``: ``memfd_create`` + ``ftruncate`` + ``mmap(MAP_POPULATE)`` of the
  squares' bytes and its unmapping: what a segment-backed result costs per call instead of the
  copy (before the caller has written or read a byte of it).

Nothing here talks to a worker; ``make bench-e2e`` times whole calls.
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import time
from typing import Callable, Dict, List


def fresh_segment(nbytes: int) -> None:
    fd = os.memfd_create("squares-bench", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, nbytes)
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0x8000)
        with mmap.mmap(fd, nbytes, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE):
            pass
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="how many squares (8 bytes each)")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    nbytes = 8 * args.n
    fd = os.memfd_create("squares-bench", os.MFD_CLOEXEC)
    os.ftruncate(fd, nbytes)
    segment = mmap.mmap(fd, nbytes)
    segment[:] = os.urandom(1 << 20) * (nbytes >> 20) + os.urandom(nbytes & ((1 << 20) - 1))
    source = memoryview(segment)
    resident = bytearray(os.urandom(16)) * (nbytes // 16) + bytearray(nbytes % 16)
    target = memoryview(resident)

    def copy_fresh() -> None:
        memoryview(bytearray(nbytes))[:] = source

    cases: Dict[str, Callable[[], None]] = {
        "copy into a resident out": lambda: target.__setitem__(slice(None), source),
        "copy into a fresh out": copy_fresh,
        "fresh segment, populated": lambda: fresh_segment(nbytes),
    }
    times: Dict[str, List[float]] = {name: [] for name in cases}
    names = list(cases)
    for run in cases.values():
        run()  # warm
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            started = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - started)
    assert bytes(target[:4096]) == bytes(source[:4096])
    print(f"{args.n:,} squares ({nbytes / 2**20:.0f} MiB), {args.rounds} rounds interleaved, median")
    base = statistics.median(times["copy into a resident out"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:<28}{m * 1e3:9.2f} ms{m / base:8.2f}x  ({m * 1e9 / args.n:.2f} ns per number)")
    del target, source
    segment.close()
    os.close(fd)


if __name__ == "__main__":
    main()
