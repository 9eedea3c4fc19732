"""Two worker builds side by side, in interleaved rounds of one run (docs/design.md, The worker).

    python3 Tests/Benchmarks/compare_workers.py --a BASE_WORKER --b NEW_WORKER [--rounds 21]

For each build: start-up (process start to `initialize` answered, median of --startup-runs), a
3-number JSON call, a 1,000,000-number call through shared memory, packed and JSON (round trips
on one running worker, medians over the rounds), and the JSON call beside its baseline in the same
run: Python's stdlib `json.dumps` of the numbers + `json.loads` of their squares' JSON text (the
floor of `bench_e2e.py`). Then B's figures as ratios of
A's, and the median of the per-round ratios. The two builds alternate within each round (A first in even rounds, B first in odd ones), so
that a loaded machine slows both alike. Standard library only; Linux for the shm call.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import secrets
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from startup import one_round_trip  # noqa: E402

MILLION = 1_000_000


def frame(message: dict) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


class Worker:
    """One running worker, driven one request at a time from this thread."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, bufsize=0)
        self.prefix = "bench-" + secrets.token_hex(8) + "-"
        self.call(frame({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"shmPrefix": self.prefix}}))

    def read_exact(self, n: int) -> bytes:
        parts, fd = [], self.process.stdout.fileno()
        while n:
            chunk = os.read(fd, min(n, 1 << 22))
            if not chunk:
                raise EOFError("the worker closed stdout")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def call(self, request: bytes) -> bytes:
        """The reply body of one request frame."""
        self.process.stdin.write(request)
        (length,) = struct.unpack(">I", self.read_exact(4))
        return self.read_exact(length)

    def timed(self, request: bytes, check) -> float:
        start = time.perf_counter()
        body = self.call(request)
        elapsed = time.perf_counter() - start
        check(body)
        return elapsed

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def backpressure(command: list[str]) -> tuple[int, int]:
    """Bytes of 3-number requests the worker lets in while it is at its in-flight bound (two
    sleeping requests, `--max-in-flight 2`): its pipe and what it holds itself; then every request
    is answered. Returns (bytes taken, replies)."""
    process = subprocess.Popen(command + ["--test-methods", "--max-in-flight", "2"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    sleep = frame({"jsonrpc": "2.0", "id": 0, "method": "test/sleep", "params": {"ms": 1500}})
    small = frame({"jsonrpc": "2.0", "id": 1, "method": "calculate_squares", "params": [[1, 2, 3]]})
    process.stdin.write(sleep + sleep)
    time.sleep(0.2)
    fd = process.stdin.fileno()
    os.set_blocking(fd, False)
    taken, deadline = 0, time.monotonic() + 0.8
    chunk = small * 64
    while time.monotonic() < deadline:
        try:  # continue where the last write stopped, so that the frames stay whole
            taken += os.write(fd, chunk[taken % len(chunk):])
        except BlockingIOError:
            time.sleep(0.01)
    os.set_blocking(fd, True)
    partial = taken % len(small)
    if partial:  # finish the frame cut by the last write
        process.stdin.write(small[partial:])
    process.stdin.close()
    replies = process.stdout.read().count(b'"jsonrpc"')
    process.wait()
    expected = 2 + (taken + len(small) - 1) // len(small)
    assert replies == expected, f"{replies} replies, {expected} expected"
    return taken, replies


def make_segment(name: str, numbers: bytes, count: int) -> int:
    """A sealed memfd as a client of protocol 1.2 makes one: numbers at 0, room for the squares."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.fchmod(fd, 0o600)
    offset = 8 * ((count + 1) // 2)
    os.ftruncate(fd, offset + 8 * count)
    os.pwrite(fd, numbers, 0)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    return fd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="the baseline worker (path)")
    parser.add_argument("--b", required=True, help="the worker compared with it (path)")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--small-calls", type=int, default=300, help="3-number calls per round")
    parser.add_argument("--startup-runs", type=int, default=51)
    parser.add_argument("--only", default="startup,small,shm,packed,json,backpressure",
                        help="the measurements to make, comma-separated (default: all)")
    options = parser.parse_args()
    only = set(options.only.split(","))
    builds = {"A": [options.a], "B": [options.b]}

    def order(round_index: int) -> list[str]:
        return ["A", "B"] if round_index % 2 == 0 else ["B", "A"]

    startup: dict[str, list[float]] = {"A": [], "B": []}
    one_round_trip(builds["A"]), one_round_trip(builds["B"])  # warm the page cache
    for r in range(options.startup_runs if "startup" in only else 0):
        for name in order(r):
            startup[name].append(one_round_trip(builds[name])[0])

    numbers = [(i * 2654435761) & 0xFFFFFFFF for i in range(MILLION)]
    packed_numbers = struct.pack(f"<{MILLION}I", *numbers)
    expected_last = str(numbers[-1] ** 2).encode()
    json_request = frame({"jsonrpc": "2.0", "id": 2, "method": "calculate_squares", "params": {"numbers": numbers}})
    packed_request = frame({"jsonrpc": "2.0", "id": 3, "method": "calculate_squares",
                            "params": {"numbersPacked": base64.b64encode(packed_numbers).decode()}})
    small_request = frame({"jsonrpc": "2.0", "id": 1, "method": "calculate_squares", "params": [[1, 2, 3]]})

    def check_small(body: bytes) -> None:
        assert body.endswith(b'"result":[1,4,9]}'), body[:200]

    def check_json(body: bytes) -> None:
        assert body.endswith(b"," + expected_last + b"]}"), body[-200:]

    def check_packed(body: bytes) -> None:
        assert b'"squaresPacked":"' in body[:80], body[:200]

    def check_shm(body: bytes) -> None:
        assert b'"squaresShm":{"offset"' in body, body[:200]

    workers = {name: Worker(command) for name, command in builds.items()}
    segments = {}
    for name, worker in workers.items():
        segment_name = worker.prefix + "million"
        fd = make_segment(segment_name, packed_numbers, MILLION)
        shm = {"pid": os.getpid(), "fd": fd, "name": segment_name, "count": MILLION}
        segments[name] = (fd, frame({"jsonrpc": "2.0", "id": 4, "method": "calculate_squares", "params": {"numbersShm": shm}}))
    figures: dict[str, dict[str, list[float]]] = {name: {"small": [], "shm": [], "packed": [], "json": []} for name in builds}
    python_json: list[float] = []
    squares_text = json.dumps([n * n for n in numbers])
    for r in range(options.rounds):
        start = time.perf_counter()
        json.dumps(numbers), json.loads(squares_text)
        python_json.append(time.perf_counter() - start)
        for name in order(r):
            worker, mine = workers[name], figures[name]
            if "small" in only:
                mine["small"].append(statistics.median(worker.timed(small_request, check_small) for _ in range(options.small_calls)))
            if "shm" in only:
                mine["shm"].append(worker.timed(segments[name][1], check_shm))
            if "packed" in only:
                mine["packed"].append(worker.timed(packed_request, check_packed))
            if "json" in only:
                mine["json"].append(worker.timed(json_request, check_json))
    for worker in workers.values():
        worker.close()
    for fd, _ in segments.values():
        os.close(fd)

    pushed = {name: backpressure(command) for name, command in builds.items()} if "backpressure" in only else {}

    medians = {name: {key: statistics.median(values) for key, values in figures[name].items() if values} for name in builds}
    for name in builds:
        if startup[name]:
            medians[name]["startup"] = statistics.median(startup[name])
    python = statistics.median(python_json)
    print(f"A = {options.a}\nB = {options.b}\n{options.rounds} rounds, start-up median of {options.startup_runs}")
    rows = [("startup", "start-up to initialize answered"), ("small", "3-number JSON call (median of a round)"),
            ("shm", "1,000,000-number shm call"), ("packed", "1,000,000-number packed call"),
            ("json", "1,000,000-number JSON call")]
    print(f"{'':42} {'A ms':>9} {'B ms':>9} {'B / A':>7} {'per round':>10}")
    for key, label in rows:
        if key not in medians["A"]:
            continue
        a, b = medians["A"][key] * 1e3, medians["B"][key] * 1e3
        pairs = zip(startup["A"], startup["B"]) if key == "startup" else zip(figures["A"][key], figures["B"][key])
        per_round = statistics.median(y / x for x, y in pairs)  # less sensitive to the load drifting
        print(f"{label:42} {a:9.3f} {b:9.3f} {b / a:7.2f} {per_round:10.2f}")
    for name in pushed:
        print(f"{name}: at the in-flight bound it took {pushed[name][0] / 1024:.0f} KiB of requests, then answered "
              f"{pushed[name][1]} replies")
    if "json" in medians["A"]:
        print(f"Python json.dumps (numbers) + json.loads (squares), 1,000,000 numbers: {python * 1e3:.1f} ms; the JSON call is "
              f"{medians['A']['json'] / python:.3f}x that for A, {medians['B']['json'] / python:.3f}x for B")


if __name__ == "__main__":
    main()
