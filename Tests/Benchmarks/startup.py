"""Start-up time of the worker: process start to `initialize` answered, median of N spawns.

The baseline, run in the same process and the same run, is `cat` spawned the same way and
echoing the same frame back: the cost of any process start and one round trip through pipes.

    python3 Tests/Benchmarks/startup.py [--runs N] -- WORKER_COMMAND...
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import time

INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize"}).encode()
FRAME = struct.pack(">I", len(INITIALIZE)) + INITIALIZE


def read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("the process closed stdout before answering")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def one_round_trip(command: list[str]) -> tuple[float, bytes]:
    """Seconds from spawn to the first reply frame read back, and that frame's body."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        os.write(process.stdin.fileno(), FRAME)
        (length,) = struct.unpack(">I", read_exact(process.stdout.fileno(), 4))
        body = read_exact(process.stdout.fileno(), length)
        elapsed = time.perf_counter() - start
    finally:
        process.stdin.close()
        process.wait()
        process.stdout.close()
    return elapsed, body


def median_ms(command: list[str], runs: int) -> float:
    return statistics.median(one_round_trip(command)[0] for _ in range(runs)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=51)
    parser.add_argument("worker", nargs="+", help="the worker command, after --")
    options = parser.parse_args()
    _, body = one_round_trip(options.worker)  # warm the page cache; check the reply
    reply = json.loads(body)
    if reply.get("result", {}).get("serverInfo", {}).get("name") is None:
        raise SystemExit(f"not an initialize reply: {body[:200]!r}")
    cat = median_ms(["cat"], options.runs)
    worker = median_ms(options.worker, options.runs)
    print(f"cat echo (baseline)           {cat:8.2f} ms")
    print(f"worker: start to initialize   {worker:8.2f} ms   {worker / cat:5.1f}x the baseline")


if __name__ == "__main__":
    main()
