"""End to end: my_module.calculate_squares against what a user would do instead, in one run.

Usage (from the repository root; ``make bench-e2e`` builds the worker and runs this in .venv)::

    python python_client/benchmarks/bench_e2e.py [--quick] [--json FILE] [--worker CMD]

Standard library only. Everything runs in this one process and run, interleaved (every round
runs every case once, in a rotating order), and the table gives medians and ratios to the
baselines measured alongside, for n = 3, 10, 1,000, 100,000 and 1,000,000 random u32:

* ``pure Python``: ``[x * x for x in xs]``, what the caller would write without the worker;
* ``stdlib JSON floor``: ``json.dumps(xs)`` + ``json.loads`` of the squares' JSON text: the
  cost of the JSON codec alone, with no pipe and no worker;
* ``pipe echo``: the very frames my_module sends for this input (packed, or JSON) written to a
  trivial echo child (a Python loop of ``os.read``/``os.write``, pipes enlarged to 1 MiB as
  the client does) and read back by the same thread: moving the bytes, nothing else;
  ``pipe echo via cat`` is the same through ``cat``, the floor of a pipe round trip;
* ``my_module (default encodings)``: ``my_module.calculate_squares(xs)``, the default (shm for
  chunks of 8,192+ numbers with a 1.2 worker, else packed with a 1.1 worker);
* ``my_module JSON``: the same on a ``Worker`` with the packed encoding off
  (``Worker(encodings=("json",))``);
* ``my_module array('I')``: the default path with the same numbers as an ``array('I')``,
  which goes to the wire from its bytes (the list is converted to u32s first);
* ``ProcessPoolExecutor(2)``: ``concurrent.futures`` with 2 processes, mapping over chunks of
  up to 32,768 numbers (my_module's own chunking; the fastest of 1 to 32 chunks here) and
  concatenating the results;
* ``worker alone, one JSON frame``: the JSON request of all ``n`` numbers as one frame,
  written straight to a worker process of its own (no my_module) and its reply frame read
  back: the worker's parse, squares and JSON text, with the pipes;
* ``shm floor``: what the client of the shared-memory plane (protocol 1.2) must do at least:
  ``array('I', xs)`` into a mapped memfd of ``my_module._shm`` and the list built from the
  squares already in it (put there once, before the clock), no worker and no frame;
* ``PyO3 module``: the seed's extension module (``pyo3_seed/``: ``Vec<u32>`` in, the GIL
  released, 4 scoped threads, ``Vec<u64>`` out), the in-process anchor that my_module's
  figures are ratios to; built by ``pyo3_seed/build.py`` when cargo and Debian's PyO3 0.17
  sources are there (``make bench-e2e`` installs the latter), left out with a note otherwise,
  and in ``--quick`` used only if it is already built; ``PyO3, one thread`` is its function
  without the threads (what spawning them costs a small call and gains a big one);

then small-call throughput (n = 10) of my_module from 1, 4 and 16 threads, 3-number calls
from 16 threads of my_module against the PyO3 module and against the ``threaded floor`` (the
same threads writing 64-byte frames to ``cat`` and woken by one reader thread: what any threaded
Python client of a pipe pays per call, with no JSON and no worker), the worker's memory while it serves
a 10,000,000-number call (``VmHWM`` - idle ``VmRSS`` from ``/proc/<pid>/status``), and the
event loop's worst lag while ``calculate_squares_async`` runs on 2,000,000 numbers (a ticker
coroutine sleeping 1 ms at a time records the longest gap between two of its wake-ups; the
same ticker on an idle loop is the baseline of the machine's own jitter).

Then arrays out (issue 22), when numpy is importable (``make venv-dask`` installs it; without it
a note and no such rows): numpy uint32 -> uint64 for 1,000,000 and 10,000,000 random numbers,
interleaved: ``my_module.calculate_squares(x, out=np.empty(n, np.uint64))`` against
``np.square(x, dtype=np.uint64)`` and ``x.astype(np.uint64) ** 2`` (the faster of the two is
the numpy baseline; all three allocate their result), and the same with one ``out`` reused
against ``np.square(x, out=..., dtype=np.uint64)``; then, in rounds of their own (a call that
returns a big list slows the call after it), my_module with ``out=`` against its list
API on the array (1,000,000 only) and the seed's PyO3 module on the same numbers as a list
(``x.tolist()``, made before the clock); the client's peak RSS growth over a 10,000,000-number
call with ``out=`` in a fresh process (``x`` and ``out`` resident before; ``VmHWM`` reset
through ``/proc/self/clear_refs``, else ``ru_maxrss``, which cannot be reset, printed beside it;
the first call, which maps the shared segments, and a second); and the event loop's worst gap
while ``calculate_squares_async(x, out=out)`` runs on 10,000,000 numbers.
``--quick`` uses 100,000 and 1,000,000 numbers and 2 rounds. With ``--rss``,
``bench_rss.py`` measures a 50,000,000-number call in a fresh process (client peak RSS growth
against the input list's own size, worker peak against the shared bytes; see there). Last, the
targets of issue 5, the ratios to the PyO3 anchor and the targets of issue 12 with PASS/MISS,
each from this run.

Timings are noisy on a shared machine: compare ratios from one run, not absolute times
across runs. ``--quick`` runs everything briefly (and 1,000,000 numbers instead of
10,000,000 for memory) as a smoke test; its figures mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import my_module  # noqa: E402
from my_module import _convert, _methods  # noqa: E402
from my_module._framing import frame_header  # noqa: E402

try:
    from my_module import _shm  # noqa: E402
except ImportError:  # an older copy of the package (--compare style runs)
    _shm = None  # type: ignore[assignment]
from pyo3_seed import build as pyo3_seed  # noqa: E402  (beside this script)
import bench_rss  # noqa: E402  (beside this script)

SIZES = [3, 10, 1_000, 100_000, 1_000_000]
THREADS = [1, 4, 16]
POOL_CHUNK = 32768
PIPE_BYTES = 1 << 20

ECHO_CHILD = (
    "import os, fcntl\n"
    "for fd in (0, 1):\n"
    "    try:\n"
    "        fcntl.fcntl(fd, 1031, 1 << 20)\n"
    "    except OSError:\n"
    "        pass\n"
    "while True:\n"
    "    data = os.read(0, 1 << 20)\n"
    "    if not data:\n"
    "        break\n"
    "    view = memoryview(data)\n"
    "    while view:\n"
    "        view = view[os.write(1, view):]\n"
)


def random_u32(n: int, seed: int) -> List[int]:
    """``n`` uniformly random u32, the same for the same seed."""
    rng = random.Random(seed)
    if array("I").itemsize == 4 and sys.version_info >= (3, 9):
        return array("I", rng.randbytes(4 * n)).tolist()
    return [rng.getrandbits(32) for _ in range(n)]


def square_chunk(xs: List[int]) -> List[int]:
    return [x * x for x in xs]


# -- the frames my_module sends --------------------------------------------------------------


def request_frames(xs: List[int], chunk: int, packed: bool) -> List[bytes]:
    """The request frames a my_module call of ``xs`` writes (same envelope, chunking, codec)."""
    frames = []
    for rid, start in enumerate(range(0, len(xs), chunk), 1):
        part = xs[start:start + chunk]
        head = b'{"jsonrpc":"2.0","id":%d,"method":"calculate_squares","params":' % rid
        if packed:
            body = _convert.encode_packed(part)
            assert body is not None
            pieces = (head, b'{"numbersPacked":"', body, b'"}}')
        else:
            pieces = (head, b'{"numbers":', _convert.encode_chunk(part, 1 << 30), b"}}")
        frames.append(frame_header(sum(map(len, pieces))) + b"".join(pieces))
    return frames


# -- the echo child ----------------------------------------------------------------------------


def _enlarge(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, ImportError):
        pass


class Echo:
    """A child that writes back every byte it reads; the parent writes and reads raw fds."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        _enlarge(self.wfd)
        _enlarge(self.rfd)
        self.round_trip([b"x" * 100])  # the child is up

    def round_trip(self, frames: List[bytes]) -> None:
        """Write ``frames`` and read the same number of bytes back."""
        total = sum(map(len, frames))
        writer = None
        if total <= PIPE_BYTES // 2:
            for frame in frames:
                self._write(frame)
        else:  # more than the pipes hold: write from a thread, as the client's caller does
            writer = threading.Thread(target=lambda: [self._write(f) for f in frames])
            writer.start()
        received = 0
        while received < total:
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise EOFError("echo child ended")
            received += len(chunk)
        if writer is not None:
            writer.join()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view):]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class WorkerAlone(Echo):
    """A worker process of its own, spoken to in raw frames (no my_module in between)."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        _enlarge(self.wfd)
        _enlarge(self.rfd)
        init = b'{"jsonrpc":"2.0","id":0,"method":"initialize"}'
        assert b'"result"' in self.exchange(frame_header(len(init)) + init)

    def exchange(self, frame: bytes) -> bytes:
        """Write one request frame and return the body of the reply frame."""
        writer = None
        if len(frame) <= PIPE_BYTES // 2:
            self._write(frame)
        else:
            writer = threading.Thread(target=self._write, args=(frame,))
            writer.start()
        length = int.from_bytes(self._read(4), "big")
        body = self._read(length)
        if writer is not None:
            writer.join()
        return body

    def _read(self, n: int) -> bytes:
        parts = []
        while n:
            part = os.read(self.rfd, min(n, 1 << 20))
            if not part:
                raise EOFError("the worker ended")
            parts.append(part)
            n -= len(part)
        return b"".join(parts)


# -- measuring ---------------------------------------------------------------------------------


def print_targets(title: str, goals: List[Tuple[str, Optional[float], str, float]]) -> List[Dict[str, Any]]:
    """Print ``(label, measured or None, "<=" or ">=", limit)`` rows with a verdict each; the rows as dicts."""
    rows = []
    print(f"\n{title}")
    print(f"  {'target':<70}{'measured':>9}{'limit':>9}  verdict")
    for label, value, op, limit in goals:
        if value is None:
            verdict, shown = "n/a (" + ("no PyO3 module)" if "PyO3" in label else "not measured)"), "-"
        else:
            met = value <= limit if op == "<=" else value >= limit
            verdict, shown = ("PASS" if met else "MISS"), f"{value:.3g}"
        rows.append({"target": label, "measured": value, "op": op, "limit": limit, "verdict": verdict})
        print(f"  {label:<70}{shown:>9}{op + format(limit, 'g'):>9}  {verdict}")
    return rows


def run_interleaved(cases: Dict[str, Callable[[], Any]], rounds: int, reps: int) -> Dict[str, List[float]]:
    """Per case, the time of each call (seconds): ``rounds`` rounds, each running every case
    ``reps`` times in a row, the order of the cases rotated from round to round."""
    names = list(cases)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for r in range(rounds):
        if reps == 1:
            gc.collect()
        for name in names[r % len(names):] + names[:r % len(names)]:
            run = cases[name]
            out = samples[name]
            for _ in range(reps):
                started = clock()
                run()
                out.append((clock() - started) * 1e-9)
    return samples


class ThreadedFloor:
    """The floor of any threaded Python client of a pipe: a caller writes a 64-byte frame to
    ``cat`` under a lock and waits on a lock of its own, which one reader thread releases when
    the frame comes back. No JSON, no worker: only the writes, reads, wake-ups and GIL hand-offs
    that every call from a thread pays."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.waiting: Dict[int, threading.Lock] = {}
        self.ids, self.write_lock = itertools.count(), threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fd, buf = self.proc.stdout.fileno(), b""  # type: ignore[union-attr]
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            buf += data
            while len(buf) >= 64:
                self.waiting.pop(int.from_bytes(buf[:8], "big")).release()
                buf = buf[64:]

    def call(self) -> None:
        done, rid = threading.Lock(), next(self.ids)
        done.acquire()
        self.waiting[rid] = done
        with self.write_lock:
            os.write(self.proc.stdin.fileno(), rid.to_bytes(8, "big") + bytes(56))  # type: ignore[union-attr]
        done.acquire()

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]


def throughput(call: Callable[[], Any], threads: int, calls: int) -> float:
    """Calls per second of ``threads`` threads making ``calls`` calls between them."""
    per_thread = max(1, calls // threads)
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            call()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    return per_thread * threads / (time.perf_counter() - started)


def loop_lag(numbers: Optional[Sequence[int]], seconds: float = 0.0, out: Any = None) -> Tuple[float, float]:
    """The longest gap (seconds) between two wake-ups of a ticker sleeping 1 ms at a time on a
    fresh event loop while ``my_module.calculate_squares_async(numbers)`` (with ``out=`` when
    given) runs (or, for None, while the loop idles ``seconds``), and how long that took."""

    async def run() -> Tuple[float, float]:
        worst = 0.0
        done = False

        async def ticker() -> None:
            nonlocal worst
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                worst = max(worst, now - last)
                last = now

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.005)
        worst = 0.0
        started = time.perf_counter()
        if numbers is None:
            await asyncio.sleep(seconds)
        else:
            if out is None:
                result = await my_module.calculate_squares_async(numbers)
            else:
                result = await my_module.calculate_squares_async(numbers, out=out)
                assert result is out
            assert len(result) == len(numbers) and int(result[-1]) == int(numbers[-1]) ** 2
        took = time.perf_counter() - started
        done = True
        await task
        return worst, took

    return asyncio.run(run())


def proc_status(pid: int) -> Dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in bytes (Linux)."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def worker_memory(command: Optional[str], n: int, packed: bool, chunk: int) -> Dict[str, Any]:
    """A fresh worker's idle RSS and its peak RSS while serving one call of ``n`` numbers."""
    xs = random_u32(n, 10)
    request_bytes = sum(map(len, request_frames(xs, chunk, packed)))
    with my_module.Worker(command, encodings=("packed", "json") if packed else ("json",)) as worker:
        worker.calculate_squares([1, 2, 3])
        pid = worker.pid
        assert pid is not None
        idle = proc_status(pid)
        started = time.perf_counter()
        result = worker.calculate_squares(xs)
        seconds = time.perf_counter() - started
        peak = proc_status(pid)
    assert len(result) == n and result[-1] == xs[-1] ** 2
    return {
        "n": n,
        "encoding": "packed" if packed else "json",
        "request_bytes": request_bytes,
        "idle_rss": idle["VmRSS"],
        "idle_hwm": idle["VmHWM"],
        "peak_hwm": peak["VmHWM"],
        "rss_after": peak["VmRSS"],
        "peak_above_idle": peak["VmHWM"] - idle["VmRSS"],
        "ratio": (peak["VmHWM"] - idle["VmRSS"]) / request_bytes,
        "seconds": seconds,
    }


# -- arrays out (issue 22): numpy uint32 -> uint64 --------------------------------------------

RSS_OUT_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np
import my_module


def status():
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


n = int(sys.argv[1])
x = np.random.default_rng(n).integers(0, 2**32, size=n, dtype=np.uint32)
out = np.empty(n, np.uint64)
out.fill(1)  # every page of x and out resident before the clock: the growth is beyond them
with my_module.Worker() as worker:
    worker.calculate_squares(x[:1000], out=out[:1000])  # started, its handshake done, imports made
    rows = []
    for call in ("first", "second"):
        rss_before = status()["VmRSS"]
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM := VmRSS
            method = "VmHWM after clear_refs"
        except OSError:
            method = "ru_maxrss"
        started = time.perf_counter()
        assert worker.calculate_squares(x, out=out) is out
        seconds = time.perf_counter() - started
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = status()["VmHWM"] if method != "ru_maxrss" else maxrss_after
        rows.append({"call": call, "method": method, "rss_before": rss_before,
                     "ru_maxrss_before": maxrss_before, "ru_maxrss_after": maxrss_after,
                     "ru_maxrss_growth": maxrss_after - max(rss_before, maxrss_before),
                     "peak": peak, "growth": peak - rss_before,
                     "valid": method != "ru_maxrss" or maxrss_before <= rss_before, "seconds": seconds})
    exact = bool(np.array_equal(out, x.astype(np.uint64) ** 2))
print(json.dumps({"n": n, "x_bytes": x.nbytes, "out_bytes": out.nbytes, "exact": exact, "calls": rows}))
"""


def rss_with_out(n: int) -> Dict[str, Any]:
    """The client's peak RSS growth over a call of ``n`` numpy uint32 with ``out=`` (numpy uint64),
    beyond ``x`` and ``out`` (both resident before), in a fresh process: its first such call (the
    shared-memory segments mapped and touched for the first time) and a second one (the pool's
    segments reused)."""
    done = subprocess.run([sys.executable, "-c", RSS_OUT_CHILD, str(n), str(Path(__file__).resolve().parents[1] / "src")],
                          check=True, capture_output=True, text=True)
    found: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["exact"], "the squares in out are wrong"
    return found


def numpy_out(quick: bool, pyo3: Any) -> Optional[Dict[str, Any]]:
    """my_module with ``out=`` on numpy uint32 against numpy's own squaring and the PyO3 seed on
    the same numbers as a list, interleaved; then the client's RSS growth and the event loop's
    worst gap with ``out=``. None (and a note) without numpy."""
    try:
        import numpy as np
    except ImportError:
        print("\nNOTE: no numpy here: the out= rows (issue 22) are left out (`make venv-dask` installs it)")
        return None
    small, big = (100_000, 1_000_000) if quick else (1_000_000, 10_000_000)
    rounds = {small: 2, big: 2} if quick else {small: 21, big: 11}
    found: Dict[str, Any] = {"small": small, "big": big, "sizes": {}}
    names = {
        "np_square": "np.square(x, dtype=np.uint64)",
        "np_astype": "x.astype(np.uint64) ** 2",
        "my_module_out": "my_module, out=np.empty(n, uint64)",
        "my_module_out_reused": "my_module, out= reused",
        "np_square_out_reused": "np.square(x, out= reused)",
        "my_module_list": "my_module, list out (no out=)",
        "pyo3_list": "PyO3 module on x.tolist()",
    }
    # The RSS first, in a child made while this process is still small.
    rss = rss_with_out(big) if os.path.exists("/proc/self/status") else None
    found["rss"] = rss
    for n in (small, big):
        x = np.random.default_rng(n).integers(0, 2**32, size=n, dtype=np.uint32)
        x[-1] = 2**32 - 1  # the top of the range: a square past 2**63
        expected = x.astype(np.uint64) ** 2
        reused, reused_np = np.empty(n, np.uint64), np.empty(n, np.uint64)
        assert my_module.calculate_squares(x, out=reused) is reused and np.array_equal(reused, expected)
        out_cases: Dict[str, Callable[[], Any]] = {
            "my_module_out": lambda x=x, n=n: my_module.calculate_squares(x, out=np.empty(n, np.uint64)),
            "my_module_out_reused": lambda x=x, o=reused: my_module.calculate_squares(x, out=o),
        }
        # Two sets of interleaved rounds: against numpy, then against the list APIs. Kept apart
        # because a call that returns a big list slows the call after it (its ints are freed
        # late, during that call: docs/performance.md).
        sets: List[Tuple[str, Dict[str, Callable[[], Any]]]] = [
            ("against numpy, the faster of its first two", {
                "np_square": lambda x=x: np.square(x, dtype=np.uint64),
                "np_astype": lambda x=x: x.astype(np.uint64) ** 2,
                **out_cases,
                "np_square_out_reused": lambda x=x, o=reused_np: np.square(x, out=o, dtype=np.uint64),
            })]
        assert np.array_equal(np.square(x, dtype=np.uint64), expected)
        lists: Dict[str, Callable[[], Any]] = dict(out_cases)
        if n <= 1_000_000:
            lists["my_module_list"] = lambda x=x: my_module.calculate_squares(x)
        if pyo3 is not None:
            xs = x.tolist()
            assert np.array_equal(np.array(pyo3.calculate_squares(xs), np.uint64), expected)
            lists["pyo3_list"] = lambda xs=xs: pyo3.calculate_squares(xs)
        if len(lists) > len(out_cases):
            sets.append(("against the list APIs", lists))
        found["sizes"][str(n)] = {}
        for title, cases in sets:
            samples = run_interleaved(cases, rounds[n], 1)
            medians = {name: statistics.median(v) for name, v in samples.items()}
            key = "numpy" if "np_square" in cases else "lists"
            found["sizes"][str(n)][key] = {
                name: {"median_s": medians[name], "min_s": min(v), "samples": len(v)} for name, v in samples.items()}
            if key == "numpy":
                numpy_best = min(medians["np_square"], medians["np_astype"])
                found["sizes"][str(n)]["numpy_best_s"] = numpy_best
            print(f"\nnumpy uint32 -> uint64, n = {n:,}, {title} ({rounds[n]} rounds interleaved, median per call)")
            print(f"  {'case':<38}{'median':>11}{'/ numpy':>9}{'/ out= reused':>15}")
            for name in cases:
                m = medians[name]
                print(f"  {names[name]:<38}{fmt_time(m):>11}{m / numpy_best:>9.2f}"
                      f"{m / medians['my_module_out_reused']:>15.2f}")
            del samples
        del x, expected, reused, reused_np, out_cases, sets, lists, cases
        if pyo3 is not None:
            del xs
        gc.collect()

    if rss is not None:
        print(f"\nclient peak RSS growth over a call of {big:,} numbers with out= (fresh process; "
              f"x {rss['x_bytes'] / 2**20:.0f} MiB and out {rss['out_bytes'] / 2**20:.0f} MiB resident before)")
        for row in rss["calls"]:
            shown = f"{row['growth'] / 2**20:7.1f} MiB" if row["valid"] else "    n/a (ru_maxrss was higher before)"
            print(f"  {row['call']} call: {shown}  ({row['method']}; ru_maxrss above its earlier peak: "
                  f"{row['ru_maxrss_growth'] / 2**20:.1f} MiB; call {row['seconds'] * 1e3:.0f} ms)")

    # The event loop's worst gap while calculate_squares_async fills out= with `big` numbers.
    runs = 2 if quick else 7
    x = np.random.default_rng(3).integers(0, 2**32, size=big, dtype=np.uint32)
    out = np.empty(big, np.uint64)
    loop_lag(x, out=out)  # warm
    lags = [loop_lag(x, out=out) for _ in range(runs)]
    idle = [loop_lag(None, t)[0] for _, t in lags]
    assert np.array_equal(out, x.astype(np.uint64) ** 2)
    worst = [w for w, _ in lags]
    found["async_lag"] = {"n": big, "worst_gap_s": worst, "call_s": [t for _, t in lags], "idle_worst_gap_s": idle}
    print(f"\nevent loop lag: calculate_squares_async on {big:,} numpy uint32 with out=, {runs} runs")
    print(f"  during the call: median {statistics.median(worst) * 1e3:.1f} ms, range {min(worst) * 1e3:.1f}-"
          f"{max(worst) * 1e3:.1f} ms (call median {statistics.median(t for _, t in lags) * 1e3:.0f} ms); "
          f"idle loop, as long: median {statistics.median(idle) * 1e3:.1f} ms, max {max(idle) * 1e3:.1f} ms")
    return found


def numpy_out_targets(found: Dict[str, Any]) -> List[Tuple[str, Optional[float], str, float]]:
    """The targets of issue 22 that bench_e2e measures (the dask.array one is bench_dask's)."""
    small, big = found["small"], found["big"]
    sz = found["sizes"]

    def out_over_numpy(n: int) -> float:
        return float(sz[str(n)]["numpy"]["my_module_out"]["median_s"] / sz[str(n)]["numpy_best_s"])

    def reused(n: int) -> float:
        numpy = sz[str(n)]["numpy"]
        return float(numpy["my_module_out_reused"]["median_s"] / numpy["np_square_out_reused"]["median_s"])

    pyo3_ratio = None
    lists = sz[str(small)].get("lists", {})
    if "pyo3_list" in lists:
        pyo3_ratio = lists["pyo3_list"]["median_s"] / lists["my_module_out_reused"]["median_s"]
    rss = found["rss"]
    growth = None
    if rss is not None and rss["calls"][0]["valid"]:
        growth = max(row["growth"] for row in rss["calls"] if row["valid"]) / 2**20
    return [
        (f"n={big:,}: my_module(out=) / numpy (time)", out_over_numpy(big), "<=", 1.5),
        (f"n={small:,}: my_module(out=) / numpy (time)", out_over_numpy(small), "<=", 3.0),
        (f"n={big:,}, out= reused: my_module / np.square(out=) (time)", reused(big), "<=", 1.5),
        (f"n={small:,}, out= reused: my_module / np.square(out=) (time)", reused(small), "<=", 3.0),
        (f"n={small:,}: PyO3 module on a list / my_module(out= reused) (time)", pyo3_ratio, ">=", 25.0),
        (f"n={big:,} with out=: client peak RSS growth beyond x and out (MiB)", growth, "<=", 64.0),
        (f"n={big:,} async with out=: event loop's worst gap, worst run (ms)",
         max(found["async_lag"]["worst_gap_s"]) * 1e3, "<=", 25.0),
    ]


# -- reporting ---------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (figures mean little)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--worker", default=None, help="worker command (default: my_module's lookup)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per size (default 25, 15 for 1,000,000; quick 2)")
    parser.add_argument("--rss", action="store_true", help="also bench_rss.py's 50,000,000-number call (fresh processes)")
    parser.add_argument("--rss-n", type=int, default=50_000_000, help="how many numbers --rss uses")
    args = parser.parse_args()
    if args.worker:
        os.environ["MY_MODULE_WORKER"] = args.worker  # the default worker of the module functions
    quick = args.quick
    rounds_for = {3: 25, 10: 25, 1_000: 25, 100_000: 25, 1_000_000: 15}
    reps_for = {3: 200, 10: 200, 1_000: 50, 100_000: 1, 1_000_000: 1}
    if quick:
        rounds_for = {n: 2 for n in SIZES}
        reps_for = {3: 20, 10: 20, 1_000: 5, 100_000: 1, 1_000_000: 1}
    if args.rounds:
        rounds_for = {n: args.rounds for n in SIZES}
    # Built before the clock starts (a first build takes minutes); the quick run never builds.
    pyo3: Any = None
    try:
        pyo3 = pyo3_seed.load(build_if_needed=not quick)
        pyo3_note = f"PyO3 module {pyo3_seed.module_path()}"
    except pyo3_seed.Unavailable as e:
        pyo3_note = f"NOTE: no PyO3 rows: {e}"
    wall_started = time.perf_counter()

    # The pool first: its processes are forked before this process has any thread.
    pool = concurrent.futures.ProcessPoolExecutor(2)
    list(pool.map(square_chunk, [[1], [2], [3], [4]]))
    default = my_module.default_worker()
    info = default.info
    packed_on = "packed" in info.get("encodings", []) and "packed" in default.options.encodings
    json_worker = my_module.Worker(args.worker, encodings=("json",))
    json_worker.info  # started now, not inside a measurement
    chunk = default.options.chunk_size or _methods.PACKED.chunk  # the packed and JSON chunk (shm: bigger)
    echo = Echo([sys.executable, "-c", ECHO_CHILD])
    cat = Echo(["cat"])
    alone = WorkerAlone(default.command)
    shm_pool = _shm.Pool() if _shm is not None and hasattr(os, "memfd_create") else None

    print(
        f"bench_e2e{' --quick' if quick else ''}: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; worker {' '.join(default.command)} "
        f"(protocol {info.get('protocolVersion')}, parallelism {info.get('parallelism')}, "
        f"encodings {','.join(info.get('encodings', ['json']))}); chunk {chunk}",
        flush=True,
    )
    print(pyo3_note)
    if not packed_on:
        print("NOTE: the worker does not advertise the packed encoding: 'my_module (default encodings)' is JSON")

    results: Dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "worker": list(default.command),
        "worker_info": info,
        "quick": quick,
        "chunk_size": chunk,
        "pyo3": {"available": pyo3 is not None, "note": pyo3_note},
        "sizes": {},
    }
    names = {
        "python": "pure Python [x*x for x in xs]",
        "json_floor": "stdlib JSON floor (dumps+loads)",
        "echo_packed": "pipe echo, packed frames",
        "echo_json": "pipe echo, JSON frames",
        "cat_packed": "pipe echo via cat, packed frames",
        "my_module_packed": "my_module (default encodings)",
        "my_module_json": "my_module JSON only",
        "my_module_array": "my_module, array('I') input",
        "process_pool": "ProcessPoolExecutor(2)",
        "worker_alone_json": "worker alone, one JSON frame",
        "shm_floor": "shm floor (no worker)",
        "pyo3": "PyO3 module (4 threads, GIL off)",
        "pyo3_one_thread": "PyO3, one thread (GIL off)",
        "threaded_floor": "threaded floor (64 B via cat)",
    }
    for n in SIZES:
        xs = random_u32(n, n)
        expected = [x * x for x in xs]
        squares_text = json.dumps(expected)
        frames_packed = request_frames(xs, chunk, True)
        frames_json = request_frames(xs, chunk, False)
        (one_frame,) = request_frames(xs, max(1, n), False)
        assert json.loads(alone.exchange(one_frame))["result"] == expected
        assert my_module.calculate_squares(xs) == expected
        assert json_worker.calculate_squares(xs) == expected
        xs_array = array("I", xs)
        assert my_module.calculate_squares(xs_array) == expected

        def pool_map(xs: List[int] = xs) -> List[int]:
            parts = [xs[i:i + POOL_CHUNK] for i in range(0, len(xs), POOL_CHUNK)]
            return list(itertools.chain.from_iterable(pool.map(square_chunk, parts)))

        assert pool_map() == expected
        cases: Dict[str, Callable[[], Any]] = {
            "python": lambda xs=xs: [x * x for x in xs],
            "json_floor": lambda xs=xs, t=squares_text: (json.dumps(xs), json.loads(t)),
            "echo_packed": lambda f=frames_packed: echo.round_trip(f),
            "echo_json": lambda f=frames_json: echo.round_trip(f),
            "cat_packed": lambda f=frames_packed: cat.round_trip(f),
            "my_module_packed": lambda xs=xs: my_module.calculate_squares(xs),
            "my_module_json": lambda xs=xs: json_worker.calculate_squares(xs),
            "my_module_array": lambda xs=xs_array: my_module.calculate_squares(xs),
            "process_pool": pool_map,
            "worker_alone_json": lambda f=one_frame: alone.exchange(f),
        }
        if shm_pool is not None:
            segment = shm_pool.acquire(n)
            start = _shm.squares_offset(n)
            assert segment.map is not None
            segment.map[start:start + 8 * n] = array("Q", expected)
            assert segment.write(xs)["count"] == n and segment.squares(n) == expected
            cases["shm_floor"] = lambda xs=xs, s=segment, n=n: (s.write(xs), s.squares(n))
        if pyo3 is not None:
            assert pyo3.calculate_squares(xs) == expected
            cases["pyo3"] = lambda xs=xs: pyo3.calculate_squares(xs)
            assert pyo3.calculate_squares_one_thread(xs) == expected
            cases["pyo3_one_thread"] = lambda xs=xs: pyo3.calculate_squares_one_thread(xs)
        samples = run_interleaved(cases, rounds_for[n], reps_for[n])
        medians = {name: statistics.median(s) for name, s in samples.items()}
        results["sizes"][str(n)] = {
            name: {"median_s": medians[name], "min_s": min(s), "samples": len(s)}
            for name, s in samples.items()
        }
        results["sizes"][str(n)]["frame_bytes"] = {
            "packed": sum(map(len, frames_packed)), "json": sum(map(len, frames_json))}
        print(f"\nn = {n:,} ({rounds_for[n]} rounds x {reps_for[n]}, median per call; "
              f"request frames: packed {sum(map(len, frames_packed)):,} B, JSON {sum(map(len, frames_json)):,} B)")
        print(f"  {'case':<34}{'median':>11}{'/ python':>10}{'/ JSON floor':>13}{'/ echo':>9}"
              f"{'/ PyO3' if pyo3 is not None else '':>9}")
        for name in cases:
            m = medians[name]
            to_pyo3 = f"{m / medians['pyo3']:>9.2f}" if pyo3 is not None else ""
            print(f"  {names[name]:<34}{fmt_time(m):>11}{m / medians['python']:>10.2f}"
                  f"{m / medians['json_floor']:>13.2f}{m / medians['echo_packed']:>9.2f}{to_pyo3}", flush=True)
        if shm_pool is not None:
            shm_pool.release(segment)
        del xs, expected, squares_text, frames_packed, frames_json, one_frame, cases, samples

    # Small-call throughput from several threads (the default worker, packed).
    small = random_u32(10, 99)
    tp_rounds, tp_calls = (2, 400) if quick else (9, 4000)
    rates: Dict[int, List[float]] = {t: [] for t in THREADS}
    for r in range(tp_rounds):
        for t in THREADS[r % len(THREADS):] + THREADS[:r % len(THREADS)]:
            rates[t].append(throughput(lambda: my_module.calculate_squares(small), t, tp_calls))
    tp = {t: statistics.median(v) for t, v in rates.items()}
    results["throughput"] = {str(t): {"median_calls_per_s": tp[t], "all": rates[t]} for t in THREADS}
    print(f"\nsmall calls (n = 10) from several threads, {tp_calls} calls per measurement, "
          f"median of {tp_rounds}")
    print(f"  {'threads':<10}{'calls/s':>10}{'/ 1 thread':>12}{'us per call':>13}")
    for t in THREADS:
        print(f"  {t:<10}{tp[t]:>10.0f}{tp[t] / tp[1]:>12.2f}{1e6 / tp[t]:>13.1f}")

    # 3-number calls from 16 threads: my_module against the PyO3 module, rounds interleaved.
    if pyo3 is not None:
        three = random_u32(3, 33)
        anchor_threads = THREADS[-1]
        floor = ThreadedFloor()
        contenders: Dict[str, Callable[[], Any]] = {
            "my_module_packed": lambda: my_module.calculate_squares(three),
            "pyo3": lambda: pyo3.calculate_squares(three),
            "pyo3_one_thread": lambda: pyo3.calculate_squares_one_thread(three),
            "threaded_floor": floor.call,
        }
        anchor_rates: Dict[str, List[float]] = {name: [] for name in contenders}
        order = list(contenders)
        for r in range(tp_rounds):
            for name in order[r % len(order):] + order[:r % len(order)]:
                anchor_rates[name].append(throughput(contenders[name], anchor_threads, tp_calls))
        anchor_tp = {name: statistics.median(v) for name, v in anchor_rates.items()}
        results["threads_3_numbers"] = {
            "threads": anchor_threads,
            **{name: {"median_calls_per_s": anchor_tp[name], "all": v} for name, v in anchor_rates.items()},
        }
        print(f"\n3-number calls from {anchor_threads} threads, {tp_calls} calls per measurement, "
              f"median of {tp_rounds}")
        print(f"  {'case':<34}{'calls/s':>10}{'/ PyO3':>9}")
        for name in contenders:
            print(f"  {names[name]:<34}{anchor_tp[name]:>10.0f}{anchor_tp[name] / anchor_tp['pyo3']:>9.2f}")
        floor.close()

    for closing in (echo, cat, alone):
        closing.close()
    if shm_pool is not None:
        shm_pool.close()
    pool.shutdown()
    json_worker.close()

    # Worker memory while serving one big call, on a fresh worker.
    big = 1_000_000 if quick else 10_000_000
    memory: List[Dict[str, Any]] = []
    if os.path.exists(f"/proc/{os.getpid()}/status"):
        memory.append(worker_memory(args.worker, big, True, chunk))
        if not quick:
            memory.append(worker_memory(args.worker, big, False, chunk))
    else:
        print("\n(no /proc: the worker's memory is not measured)")
    results["memory"] = memory
    if memory:
        print(f"\nworker memory serving one call of {big:,} numbers (fresh worker; /proc/<pid>/status)")
        print(f"  {'encoding':<10}{'request MB':>11}{'idle RSS':>10}{'peak HWM':>10}{'peak-idle':>11}"
              f"{'/ request':>11}{'call':>10}")
    for m in memory:
        print(f"  {m['encoding']:<10}{m['request_bytes'] / 1e6:>11.1f}{m['idle_rss'] / 1e6:>9.1f}M"
              f"{m['peak_hwm'] / 1e6:>9.1f}M{m['peak_above_idle'] / 1e6:>10.1f}M"
              f"{m['ratio']:>11.2f}{m['seconds']:>9.2f}s")

    # The event loop's worst lag while calculate_squares_async runs on 2,000,000 numbers.
    lag_n, lag_runs = 2_000_000, (2 if quick else 7)
    lag_input = random_u32(lag_n, 2)
    loop_lag(lag_input)  # warm: the loop's default executor, the worker's threads
    lags: List[Tuple[float, float]] = []
    idle_lags: List[float] = []
    for _ in range(lag_runs):
        lags.append(loop_lag(lag_input))
        idle_lags.append(loop_lag(None, lags[-1][1])[0])
    del lag_input
    worst_lags = [w for w, _ in lags]
    results["async_lag"] = {"n": lag_n, "worst_gap_s": worst_lags, "call_s": [t for _, t in lags],
                            "idle_worst_gap_s": idle_lags}
    print(f"\nevent loop lag: calculate_squares_async on {lag_n:,} numbers, a 1 ms ticker's longest gap, "
          f"{lag_runs} runs (each on a fresh loop; the gap includes the 1 ms sleep)")
    print(f"  during the call: median {statistics.median(worst_lags) * 1e3:.1f} ms, "
          f"range {min(worst_lags) * 1e3:.1f}-{max(worst_lags) * 1e3:.1f} ms "
          f"(call median {statistics.median(t for _, t in lags) * 1e3:.0f} ms)")
    print(f"  idle loop, as long: median {statistics.median(idle_lags) * 1e3:.1f} ms, "
          f"range {min(idle_lags) * 1e3:.1f}-{max(idle_lags) * 1e3:.1f} ms")

    arrays_out = numpy_out(quick, pyo3)
    results["numpy_out"] = arrays_out

    rss_rows: List[Dict[str, Any]] = []
    if args.rss:
        rss = bench_rss.measure(args.rss_n, args.worker)
        results["rss"] = rss
        rss_rows = bench_rss.report(rss)

    # The targets of issue 5.
    s = results["sizes"]

    def med(n: int, name: str) -> float:
        return float(s[str(n)][name]["median_s"])

    targets: List[Tuple[str, float, str, float]] = [
        ("n=1M: my_module / pure Python", med(1_000_000, "my_module_packed") / med(1_000_000, "python"), "<=", 1.3),
        ("n=1M: my_module JSON / stdlib JSON floor", med(1_000_000, "my_module_json") / med(1_000_000, "json_floor"), "<=", 1.15),
        ("n=10: my_module latency / pipe echo (Python child)", med(10, "my_module_packed") / med(10, "echo_packed"), "<=", 1.3),
        ("n=10: my_module latency / pipe echo via cat", med(10, "my_module_packed") / med(10, "cat_packed"), "<=", 1.3),
        ("n=1M: my_module array('I') / the same list", med(1_000_000, "my_module_array") / med(1_000_000, "my_module_packed"), "<=", 1.0),
        ("n=10: ProcessPoolExecutor / my_module latency", med(10, "process_pool") / med(10, "my_module_packed"), ">=", 3.0),
        ("16 threads / 1 thread small calls per second", tp[16] / tp[1], ">=", 3.0),
    ]
    if memory:
        targets.append((f"{big // 1_000_000}M numbers: worker peak RSS - idle / request bytes", memory[0]["ratio"], "<=", 3.0))
    results["targets"] = []
    print("\ntargets (issues 5 and 9), ratios from this run")
    print(f"  {'target':<60}{'measured':>9}{'limit':>9}  verdict")
    for label, value, op, limit in targets:
        met = value <= limit if op == "<=" else value >= limit
        if met:
            verdict = "met"
        elif op == "<=":
            verdict = f"missed ({value / limit:.2f}x the limit)"
        else:
            verdict = f"missed ({value / limit:.2f} of the goal)"
        results["targets"].append({"target": label, "measured": value, "op": op, "limit": limit, "met": met})
        print(f"  {label:<60}{value:>9.2f}{op + format(limit, 'g'):>9}  {verdict}")

    # The anchor of issue 12: my_module as a ratio to the seed's PyO3 module, in one process.
    if pyo3 is not None:
        t3 = results["threads_3_numbers"]
        anchor = [
            ("n=1M: my_module / PyO3 (time)", med(1_000_000, "my_module_packed") / med(1_000_000, "pyo3")),
            ("n=1M: pure Python / PyO3 (time)", med(1_000_000, "python") / med(1_000_000, "pyo3")),
            ("n=3: my_module latency / PyO3 latency", med(3, "my_module_packed") / med(3, "pyo3")),
            ("n=3: my_module latency / PyO3 one-thread latency", med(3, "my_module_packed") / med(3, "pyo3_one_thread")),
            ("n=3: ProcessPoolExecutor(2) latency / PyO3 latency", med(3, "process_pool") / med(3, "pyo3")),
            (f"{t3['threads']} threads, n=3: my_module calls/s / PyO3 calls/s",
             t3["my_module_packed"]["median_calls_per_s"] / t3["pyo3"]["median_calls_per_s"]),
            (f"{t3['threads']} threads, n=3: my_module calls/s / PyO3 one-thread calls/s",
             t3["my_module_packed"]["median_calls_per_s"] / t3["pyo3_one_thread"]["median_calls_per_s"]),
        ]
        results["pyo3_anchor"] = [{"ratio": label, "measured": value} for label, value in anchor]
        print("\nthe PyO3 anchor (issue 12): my_module against the seed's module, ratios from this run")
        for label, value in anchor:
            print(f"  {label:<60}{value:>9.2f}")
    # The targets of issue 12, each from this run.
    goals: List[Tuple[str, Optional[float], str, float]] = [
        ("n=1M: my_module / list comprehension (time)",
         med(1_000_000, "my_module_packed") / med(1_000_000, "python"), "<=", 0.9),
        ("n=1M: worker alone, one JSON frame / stdlib json dumps+loads",
         med(1_000_000, "worker_alone_json") / med(1_000_000, "json_floor"), "<=", 0.25),
        ("n=3: ProcessPoolExecutor(2) / my_module (latency)",
         med(3, "process_pool") / med(3, "my_module_packed"), ">=", 3.0),
        (f"n={lag_n // 1_000_000}M async: event loop's worst gap, median of runs (ms)",
         statistics.median(worst_lags) * 1e3, "<=", 25.0),
        (f"n={lag_n // 1_000_000}M async: event loop's worst gap, worst run (ms)",
         max(worst_lags) * 1e3, "<=", 25.0),
    ]
    if pyo3 is not None:
        t3 = results["threads_3_numbers"]
        goals[1:1] = [("n=1M: my_module / PyO3 module (time)",
                       med(1_000_000, "my_module_packed") / med(1_000_000, "pyo3"), "<=", 1.0)]
        goals[3:3] = [
            ("n=3: my_module / PyO3 module (latency)", med(3, "my_module_packed") / med(3, "pyo3"), "<=", 1.0),
            (f"{t3['threads']} threads, n=3: my_module / PyO3 module (calls/s)",
             t3["my_module_packed"]["median_calls_per_s"] / t3["pyo3"]["median_calls_per_s"], ">=", 1.5),
        ]
    else:
        goals += [(label, None, op, limit) for label, op, limit in (
            ("n=1M: my_module / PyO3 module (time)", "<=", 1.0),
            ("n=3: my_module / PyO3 module (latency)", "<=", 1.0),
            ("16 threads, n=3: my_module / PyO3 module (calls/s)", ">=", 1.5))]
    goals += [(r["target"], r["measured"], r["op"], r["limit"]) for r in rss_rows]
    if not rss_rows:
        goals += [(f"n=50M: {what} (--rss)", None, "<=", limit) for what, limit in (
            ("client peak RSS growth / input list's own size", 2.0),
            ("worker peak RSS (VmHWM) / shared bytes (12 B/number)", 3.0))]
    results["issue12_targets"] = print_targets("the targets of issue 12, from this run", goals)
    if arrays_out is not None:  # the targets of issue 22 (arrays out), each from this run
        results["issue22_targets"] = print_targets("the targets of issue 22 (out=), from this run"
                                                   + (" (--quick: smaller sizes)" if quick else ""),
                                                   numpy_out_targets(arrays_out))
    total = time.perf_counter() - wall_started
    results["seconds"] = total
    print(f"\n{total:.0f} s in all")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
