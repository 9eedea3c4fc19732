"""Peak memory of one big call (issue 12): the client's peak RSS growth against the input
list's own size, and the worker's peak RSS against the bytes a shared-memory call shares.

Usage (from the repository root)::

    python python_client/benchmarks/bench_rss.py [--n 50000000] [--worker CMD] [--encodings packed,json]

Each measurement runs in a fresh Python process (so no earlier allocation hides in the peak),
Linux only (``/proc``). In that process:

* the input: ``n`` random u32 as a ``list`` of ``int`` (from ``array('I').tolist()``, so each
  element is its own int object, 28 or 32 bytes); its **own size** is
  ``sys.getsizeof(list) + sum(sys.getsizeof(x) for x in list)`` (the pointer array plus every
  element; pymalloc's rounding of 28-byte ints to 32-byte blocks is not counted, the RSS the
  list added when built is printed beside it as a check);
* the **client's peak growth**: ``VmHWM`` after the call minus ``VmRSS`` just before it, with
  the high-water mark reset just before the call (``5`` written to ``/proc/self/clear_refs``;
  where that is refused, a thread samples ``VmRSS`` every 2 ms instead, and the output says
  so). It includes the result list, which any API returning a list must build: its own size
  (counted the same way: 36-byte ints for squares of 2**60 or more) is printed as the floor;
* the **worker's peak**: ``VmHWM`` of ``/proc/<Worker.pid>/status`` read after the call and
  before the worker exits, and the same minus its idle ``VmRSS`` (after a 3-number call),
  against the shared bytes, 12 per number (a u32 in, a u64 out).

Targets (issue 12): client growth <= 2 x the input's own size; worker peak <= 3 x the shared
bytes. The verdicts use the worker's whole ``VmHWM`` (the stricter reading).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any, Dict, List, Optional

SRC = Path(__file__).resolve().parents[1] / "src"


def status(pid: int) -> Dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def own_size(xs: List[int]) -> int:
    return sys.getsizeof(xs) + sum(map(sys.getsizeof, xs))


def child(n: int, worker: Optional[str], encodings: Optional[str]) -> Dict[str, Any]:
    """The measurement, in this (fresh) process."""
    sys.path.insert(0, str(SRC))
    import my_module

    me = os.getpid()
    before_list = status(me)["VmRSS"]
    raw = random.Random(n).randbytes(4 * n)
    xs = array("I", raw).tolist()
    del raw
    list_rss = status(me)["VmRSS"] - before_list
    input_bytes = own_size(xs)
    options: Dict[str, Any] = {} if not encodings else {"encodings": tuple(encodings.split(","))}
    with my_module.Worker(worker, **options) as w:
        w.calculate_squares([1, 2, 3])
        pid = w.pid
        assert pid is not None
        worker_idle = status(pid)["VmRSS"]
        rss_before = status(me)["VmRSS"]
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            sampled = None
        except OSError:
            sampled = [rss_before]
        stop = threading.Event()

        def sample() -> None:
            assert sampled is not None
            while not stop.wait(0.002):
                sampled[0] = max(sampled[0], status(me)["VmRSS"])

        sampler = threading.Thread(target=sample) if sampled is not None else None
        if sampler:
            sampler.start()
        started = time.perf_counter()
        result = w.calculate_squares(xs)
        seconds = time.perf_counter() - started
        stop.set()
        if sampler:
            sampler.join()
        client_peak = status(me)["VmHWM"] if sampled is None else sampled[0]
        worker_status = status(pid)
        info = w.info
    assert len(result) == n and result[0] == xs[0] ** 2 and result[-1] == xs[-1] ** 2
    return {
        "n": n,
        "worker_protocol": info.get("protocolVersion"),
        "worker_encodings": info.get("encodings"),
        "client_encodings": encodings or "default",
        "peak_method": "VmHWM after clear_refs" if sampled is None else "VmRSS sampled every 2 ms",
        "input_own_bytes": input_bytes,
        "input_list_rss": list_rss,
        "result_own_bytes": own_size(result),
        "client_rss_before": rss_before,
        "client_peak": client_peak,
        "client_growth": client_peak - rss_before,
        "client_ratio": (client_peak - rss_before) / input_bytes,
        "shared_bytes": 12 * n,
        "worker_idle_rss": worker_idle,
        "worker_hwm": worker_status["VmHWM"],
        "worker_ratio": worker_status["VmHWM"] / (12 * n),
        "worker_above_idle_ratio": (worker_status["VmHWM"] - worker_idle) / (12 * n),
        "seconds": seconds,
    }


def measure(n: int, worker: Optional[str] = None, encodings: Optional[str] = None) -> Dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return what it measured."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--n", str(n)]
    if worker:
        argv += ["--worker", worker]
    if encodings:
        argv += ["--encodings", encodings]
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def report(m: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Print one measurement and return its two targets as rows (label, measured, limit, met)."""
    mb = 1e6
    print(f"\none call of {m['n']:,} numbers in a fresh process (worker protocol {m['worker_protocol']}, "
          f"encodings {','.join(m['worker_encodings'] or [])}; client {m['client_encodings']}; "
          f"{m['seconds']:.1f} s; peak by {m['peak_method']})")
    print(f"  input list's own size (getsizeof list + its ints)   {m['input_own_bytes'] / mb:9.0f} MB"
          f"   (RSS it added when built: {m['input_list_rss'] / mb:.0f} MB)")
    print(f"  result list's own size (the floor of the growth)    {m['result_own_bytes'] / mb:9.0f} MB"
          f"   ({m['result_own_bytes'] / m['input_own_bytes']:.2f} x the input)")
    print(f"  client peak RSS growth during the call              {m['client_growth'] / mb:9.0f} MB"
          f"   ({m['client_ratio']:.2f} x the input)")
    print(f"  shared bytes (12 per number)                        {m['shared_bytes'] / mb:9.0f} MB")
    print(f"  worker peak RSS (VmHWM); idle RSS                   {m['worker_hwm'] / mb:9.0f} MB"
          f"   ({m['worker_ratio']:.2f} x shared; above idle {m['worker_above_idle_ratio']:.2f} x;"
          f" idle {m['worker_idle_rss'] / mb:.0f} MB)")
    n = f"{m['n'] // 1_000_000}M" if m["n"] >= 1_000_000 else f"{m['n']:,}"
    return [
        {"target": f"n={n}: client peak RSS growth / input list's own size", "measured": m["client_ratio"],
         "op": "<=", "limit": 2.0},
        {"target": f"n={n}: worker peak RSS (VmHWM) / shared bytes (12 B/number)", "measured": m["worker_ratio"],
         "op": "<=", "limit": 3.0},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000_000, help="how many numbers (default 50,000,000)")
    parser.add_argument("--worker", default=None, help="worker command (default: my_module's lookup)")
    parser.add_argument("--encodings", default=None, help="Worker(encodings=...) as a comma list (default: its default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.n, args.worker, args.encodings)))
        return
    if not os.path.exists("/proc/self/status"):
        sys.exit("bench_rss: needs Linux /proc")
    for row in report(measure(args.n, args.worker, args.encodings)):
        met = row["measured"] <= row["limit"]
        print(f"  {row['target']:<62}{row['measured']:>7.2f} <= {row['limit']:g}  {'PASS' if met else 'MISS'}")


if __name__ == "__main__":
    main()
