"""One big calculate_squares call in a fresh process, measured: ``python limits_probe.py N``.

Run by test_limits.py in a process of its own, so that the client's peak RSS
(``getrusage().ru_maxrss``) is this call's and not whatever an earlier test peaked at.
Prints one JSON object: sizes, timings, the client's RSS before and its peak after, the
worker's peak (VmHWM) and whether every square was right.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from array import array

import my_module


def vm_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def main() -> None:
    n = int(sys.argv[1])
    started = time.monotonic()
    packed = array("I", os.urandom(4 * n))
    numbers = packed.tolist()
    del packed
    made = time.monotonic() - started
    # What the input takes: the list's pointer array, and each int object (28 bytes below
    # 2**30, 32 above; counted from the values rather than 50,000,000 getsizeof calls).
    big = sum(1 for _ in filter((1 << 30).__le__, numbers))
    input_bytes = sys.getsizeof(numbers) + 28 * n + 4 * big

    with my_module.Worker() as worker:
        worker.info  # started: its memory is not ours, and the start is not timed
        worker_pid = worker.pid
        assert worker_pid is not None
        rss_before = vm_kib(os.getpid(), "VmRSS")
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        worker_rss_before = vm_kib(worker_pid, "VmRSS")
        t0 = time.monotonic()
        result = worker.calculate_squares(numbers)
        call_seconds = time.monotonic() - t0
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        worker_hwm = vm_kib(worker_pid, "VmHWM")
        same_worker = worker.pid == worker_pid

    t0 = time.monotonic()
    step = 1 << 20
    wrong = len(result) != n or any(
        result[i:i + step] != [x * x for x in numbers[i:i + step]] for i in range(0, n, step)
    )
    verify_seconds = time.monotonic() - t0
    print(json.dumps({
        "n": n,
        "input_list_bytes": sys.getsizeof(numbers),
        "input_bytes": input_bytes,
        "make_seconds": round(made, 2),
        "call_seconds": round(call_seconds, 2),
        "verify_seconds": round(verify_seconds, 2),
        "correct": not wrong,
        "same_worker": same_worker,
        "client_rss_before_kib": rss_before,
        "client_peak_before_kib": peak_before,
        "client_peak_after_kib": peak_after,
        "worker_rss_before_kib": worker_rss_before,
        "worker_hwm_kib": worker_hwm,
    }))


if __name__ == "__main__":
    main()
