"""Soak: 16 threads call one worker for a bounded time, with random timeouts and cancellations.

Every result is compared with ``[x * x for x in numbers]``; every failure must be a timeout
the call asked for (or a cancellation it made); the worker's RSS is sampled all along and must
stay flat; nothing may hang. ``SOAK_SECONDS`` sets the length (default 30; ``make soak`` runs
600). The RSS curve is printed and written to ``soak_rss.csv`` in the test's tmp directory.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

import my_module

from conftest import in_flight

from load import Tally, call_once, log_uniform_size, random_numbers, run_threads
from resources import Snapshot, assert_no_leaks, vm_kib

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="samples RSS and counts resources in /proc"
)

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
THREADS = 16
SLACK = 1.5  # seconds a call may end after its timeout (see test_reliability.SLACK)
RSS_GROWTH = 1.5  # the last quarter's peak may be at most this times the first quarter's...
RSS_SLACK_KIB = 8 * 1024  # ...plus this much
CLIENT_RSS_SLACK_KIB = 32 * 1024  # the client's working set is 16 threads' inputs and results


def pick_timeout(rng: random.Random) -> Optional[float]:
    """None (no limit), a generous one, or one short enough to expire mid-call."""
    kind = rng.random()
    if kind < 0.3:
        return None
    if kind < 0.6:
        return 30.0
    if kind < 0.8:
        return rng.uniform(0.0005, 0.02)
    return rng.uniform(0.02, 0.5)


def sparkline(values: List[int], width: int = 60) -> str:
    """The curve in one line of block characters (min to max of the values)."""
    if not values:
        return ""
    step = max(1, len(values) // width)
    points = [max(values[i:i + step]) for i in range(0, len(values), step)]
    low, high = min(points), max(points)
    blocks = "▁▂▃▄▅▆▇█"
    return "".join(blocks[0 if high == low else (v - low) * 7 // (high - low)] for v in points)


def quarter_peaks(values: List[int]) -> Tuple[int, int, int, int]:
    n = len(values)
    quarters = [values[i * n // 4:(i + 1) * n // 4] or [0] for i in range(4)]
    return tuple(max(q) for q in quarters)  # type: ignore[return-value]


def test_soak_16_threads_mixed_sizes_timeouts_and_cancellations(worker_command, tmp_path: Path, caplog) -> None:
    # Nothing hangs: past the soak plus a generous margin, every thread's stack is dumped
    # and the run exits (this replaces conftest's 60 s bound for this one test).
    faulthandler.dump_traceback_later(SOAK_SECONDS + 90, exit=True)
    before = Snapshot.settled()
    worker = my_module.Worker(worker_command)
    worker.info  # started: the first sample is the idle worker
    pid = worker.pid
    assert pid is not None
    samples: List[Tuple[float, int, int, int]] = []  # (t, worker VmRSS, client VmRSS, in flight)
    # Every outcome: the right squares, a cancellation the caller made, or the TimeoutError
    # of a call that asked for a timeout. No crash, no protocol error, nothing wrong or hung.
    tally = Tally({"ok", "cancelled", "TimeoutError"}, SLACK)
    caplog.set_level(logging.WARNING, logger="my_module")
    started = time.monotonic()
    end = started + SOAK_SECONDS
    sampling = threading.Event()

    def sampler() -> None:
        interval = max(0.1, SOAK_SECONDS / 400)
        while not sampling.wait(interval):
            rss = vm_kib(pid, "VmRSS")
            if rss is None:
                return  # the worker is gone: reported below
            samples.append((time.monotonic() - started, rss, vm_kib(os.getpid(), "VmRSS") or 0,
                            in_flight(worker)))

    def load(i: int) -> None:
        rng = random.Random(1000 + i)
        while time.monotonic() < end:
            numbers = random_numbers(rng, log_uniform_size(rng, 10, 200_000))
            style = rng.choices(("sync", "submit", "cancel", "async"), (45, 25, 20, 10))[0]
            tally.add(call_once(worker, numbers, style, pick_timeout(rng), rng))

    sampler_thread = threading.Thread(target=sampler, name="rss-sampler")
    sampler_thread.start()
    try:
        run_threads(THREADS, load, join_timeout=SOAK_SECONDS + 60)
    finally:
        sampling.set()
        sampler_thread.join()
    elapsed = time.monotonic() - started
    # Every request cancelled or expired was answered by the worker: nothing left in it.
    deadline = time.monotonic() + 10
    while in_flight(worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    in_flight_after = in_flight(worker)
    same_worker = worker.pid == pid
    hwm = vm_kib(pid, "VmHWM")
    worker.close()
    after = assert_no_leaks(before)

    # Nothing went wrong inside the client either (a swallowed internal error is logged).
    errors = [r.getMessage() for r in caplog.records
              if r.name.startswith("my_module") and r.levelno >= logging.WARNING]
    worker_rss = [s[1] for s in samples]
    client_rss = [s[2] for s in samples]
    with open(tmp_path / "soak_rss.csv", "w") as f:
        f.write("seconds,worker_rss_kib,client_rss_kib,requests_in_flight\n")
        f.writelines(f"{t:.2f},{w},{c},{n}\n" for t, w, c, n in samples)
    kinds = tally.kinds
    q = quarter_peaks(worker_rss)
    cq = quarter_peaks(client_rss)
    print(
        f"\n[soak] {THREADS} threads, {elapsed:.1f} s, {tally.calls / elapsed:.0f} calls/s\n"
        f"  {tally.summary()}\n"
        f"  worker RSS MiB, per quarter peak: {' / '.join(f'{v / 1024:.1f}' for v in q)}; "
        f"VmHWM {hwm and hwm / 1024:.1f} MiB; {len(samples)} samples: {sparkline(worker_rss)}\n"
        f"  client RSS MiB, per quarter peak: {' / '.join(f'{v / 1024:.1f}' for v in cq)}: "
        f"{sparkline(client_rss)}\n"
        f"  most requests in flight at a sample: {max((s[3] for s in samples), default=0)}; "
        f"curve: {tmp_path / 'soak_rss.csv'}\n"
        f"  my_module errors logged: {len(errors)}\n"
        f"  resources before: {before.summary()}; after: {after.summary()}"
    )

    assert same_worker, "the worker died or was replaced during the soak"
    tally.assert_clean()
    assert errors == [], errors[:3]
    assert in_flight_after == 0, f"{in_flight_after} requests never answered by the worker"
    # Enough happened: thousands of calls, of each outcome.
    assert tally.calls >= 50 * SOAK_SECONDS
    assert kinds["ok"] and kinds["cancelled"] and kinds["TimeoutError"]
    assert len(samples) >= 50
    # Flat: the worker's memory at the end is what it was once warmed up.
    assert q[3] <= RSS_GROWTH * q[0] + RSS_SLACK_KIB, f"worker RSS grew: quarter peaks {q} KiB"
    # And the client's (it caught finished calls kept alive by the deadline watcher).
    assert cq[3] <= RSS_GROWTH * cq[0] + CLIENT_RSS_SLACK_KIB, f"client RSS grew: quarter peaks {cq} KiB"
