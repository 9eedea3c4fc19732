"""What does a small call cost? Round trips of a few numbers, against baselines in this run.

Usage: python benchmarks/bench_latency.py [--calls 3000] [--size 3] [--worker CMD]
                                        [--compare DIR/NAME] [--encodings shm,packed,json]

* ``raw frames``: the same worker driven by the simplest possible client (write a frame,
  read the reply on the same thread): the worker's and the pipes' share;
* ``my_module``: ``Worker.calculate_squares`` (writer lock, reader thread, Future);
* ``my_module x8``: the same from 8 threads at once (calls per second, not latency);
* ``ProcessPoolExecutor``: ``concurrent.futures`` with one process doing the squaring.

``--compare DIR/NAME`` also times another copy of the package (e.g. an older commit's
``src/my_module`` exported to DIR/NAME), in interleaved rounds against this one in the same
process: wall time and the calling thread's CPU time (less sensitive to a loaded machine),
medians over the rounds and the median of the per-round ratios, and the whole process's CPU
time (the reader thread's share too). Rounds hold 300 calls, or one call of more than 1,000
numbers; ``--threads N`` makes them from N threads at once (wall time per call: 1/throughput); ``--encodings`` restricts both Workers (e.g. ``packed``: what a call costs without
shared memory). Example, a 1,000,000-number packed call in 25 rounds:
``--compare DIR/NAME --size 1000000 --calls 25 --encodings packed``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import statistics
import json
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import my_module  # noqa: E402


def squares(numbers: List[int]) -> List[int]:
    return [n * n for n in numbers]


def read_exact(stream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def raw_round_trips(argv, numbers: List[int], calls: int) -> float:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0)
    started = 0.0
    for i in range(calls + 100):
        if i == 100:
            started = time.perf_counter()
        body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "calculate_squares",
                           "params": {"numbers": numbers}}).encode()
        proc.stdin.write(struct.pack("!I", len(body)) + body)
        (length,) = struct.unpack("!I", read_exact(proc.stdout, 4))
        json.loads(read_exact(proc.stdout, length))
    elapsed = time.perf_counter() - started
    proc.stdin.close()
    proc.wait()
    return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--size", type=int, default=3, help="numbers per call")
    parser.add_argument("--worker", default=None)
    parser.add_argument("--compare", metavar="DIR/NAME", default=None, help="another copy of the package")
    parser.add_argument("--encodings", default="shm,packed,json", help="for --compare: the Workers' encodings")
    parser.add_argument("--threads", type=int, default=1, help="for --compare: calling threads (wall: per call)")
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    numbers = list(range(args.size))
    results = {}

    with my_module.Worker(args.worker) as worker:
        argv = worker.command
        for _ in range(100):
            worker.calculate_squares(numbers)
        started = time.perf_counter()
        for _ in range(args.calls):
            worker.calculate_squares(numbers)
        results["my_module"] = (time.perf_counter() - started) / args.calls

        per_thread = args.calls // 8
        barrier = threading.Barrier(8)

        def run() -> None:
            barrier.wait()
            for _ in range(per_thread):
                worker.calculate_squares(numbers)

        threads = [threading.Thread(target=run) for _ in range(8)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results["my_module x8"] = (time.perf_counter() - started) / (per_thread * 8)

    results["raw frames"] = raw_round_trips(argv, numbers, args.calls)

    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        for _ in range(100):
            pool.submit(squares, numbers).result()
        started = time.perf_counter()
        for _ in range(args.calls):
            pool.submit(squares, numbers).result()
        results["ProcessPoolExecutor"] = (time.perf_counter() - started) / args.calls

    print(f"{args.calls} calls of {args.size} numbers; per call (x8: wall time / calls)")
    for name, seconds in results.items():
        print(f"{name:<22}{seconds * 1e6:>8.0f} us{seconds / results['raw frames']:>8.2f} x raw")


def compare(args: argparse.Namespace) -> None:
    folder = Path(args.compare).resolve()
    sys.path.insert(0, str(folder.parent))
    other = importlib.import_module(folder.name)
    numbers = list(range(args.size))
    encodings = tuple(args.encodings.split(","))
    workers = {"my_module": my_module.Worker(args.worker, encodings=encodings)}
    workers[folder.name] = other.Worker(workers["my_module"].command, encodings=encodings)
    per_round = 300 if args.size <= 1000 else 1
    for worker in workers.values():
        for _ in range(per_round):
            worker.calculate_squares(numbers)
    wall = {name: [] for name in workers}
    cpu = {name: [] for name in workers}
    process = {name: [] for name in workers}
    for _ in range(max(1, args.calls // per_round)):
        for name, worker in workers.items():
            started, cpu_started, process_started = time.perf_counter(), time.thread_time(), time.process_time()
            if args.threads == 1:
                for _ in range(per_round):
                    worker.calculate_squares(numbers)
            else:  # the same number of calls, from that many threads at once
                threads = [threading.Thread(target=lambda: [worker.calculate_squares(numbers)
                                                            for _ in range(per_round // args.threads)])
                           for _ in range(args.threads)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            wall[name].append((time.perf_counter() - started) / per_round)
            cpu[name].append((time.thread_time() - cpu_started) / per_round)
            process[name].append((time.process_time() - process_started) / per_round)
    for worker in workers.values():
        worker.close()
    print(f"{len(wall['my_module'])} interleaved rounds of {per_round} calls of {args.size} numbers "
          f"from {args.threads} thread(s) (encodings {args.encodings}); medians")
    for name in workers:
        ratio = statistics.median(c / o for c, o in zip(cpu[name], cpu[folder.name]))
        print(f"{name:<22}{statistics.median(wall[name]) * 1e6:>10.0f} us wall"
              f"{statistics.median(cpu[name]) * 1e6:>10.0f} us CPU{ratio:>6.2f} x {folder.name}'s CPU"
              f"{statistics.median(process[name]) * 1e6:>10.0f} us process CPU")


if __name__ == "__main__":
    main()
