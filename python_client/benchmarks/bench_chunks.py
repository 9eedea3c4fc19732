"""How big should a pipelined chunk be? Time calculate_squares of one big input per chunk size.

Usage: python benchmarks/bench_chunks.py [--n 1000000] [--runs 7] [--worker CMD]

Everything is measured in this one process and run, interleaved (one round = every
configuration once, the best of ``--runs`` rounds is kept), and reported as ratios to
baselines measured the same way:

* ``python``: ``[x * x for x in numbers]``, what the caller would do without the worker;
* ``codec``: the client's unavoidable share with no pipe and no worker: encode the input as
  the client does and decode the reply's bytes (``--encoding packed``: base64 of an
  ``array('I')`` out, the reply's envelope + base64 + ``array('Q').tolist()`` back; ``json``:
  ``repr`` of the list out, ``json.loads`` back);
* ``pipe echo``: the encoded input written through ``cat`` and read back, the cost of moving
  the bytes through two pipes with no parsing on the far side.

A smaller chunk lets Python encode chunk k+1 while the worker parses and squares chunk k and
while the reader thread decodes chunk k-1; too small a chunk pays per-request overhead.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Callable, Dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import my_module  # noqa: E402
from my_module import _convert, _jsonrpc  # noqa: E402

CHUNK_SIZES = [4096, 16384, 32768, 65536, 131072, 262144, 1 << 30]


def pipe_echo(payload: bytes) -> None:
    """Send ``payload`` through ``cat`` and read it all back (a writer thread avoids deadlock)."""
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None

    def write() -> None:
        assert proc.stdin is not None
        proc.stdin.write(payload)
        proc.stdin.close()

    t = threading.Thread(target=write)
    t.start()
    received = 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        received += len(chunk)
    t.join()
    proc.wait()
    assert received == len(payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="numbers per call")
    parser.add_argument("--runs", type=int, default=7, help="rounds; the best of each is kept")
    parser.add_argument("--worker", default=None, help="worker command (default: the lookup)")
    parser.add_argument("--sizes", default=",".join(map(str, CHUNK_SIZES)),
                        help="comma-separated chunk sizes to compare")
    parser.add_argument("--encoding", choices=["packed", "json"], default="packed",
                        help="encoding of the numbers (packed needs a protocol 1.1 worker)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rng = random.Random(7)
    numbers = [rng.getrandbits(32) for _ in range(args.n)]
    expected = [x * x for x in numbers]
    if args.encoding == "packed":
        result: object = {"squaresPacked": base64.b64encode(array("Q", expected)).decode()}
        encode: Callable[[], bytes] = lambda: _convert.encode_packed(numbers)  # type: ignore
        decode = lambda body: _convert.squares_from_bytes(_convert.decode_packed_bytes(  # noqa: E731
            _jsonrpc.loads(body, b"squaresPacked")["result"]["squaresPacked"], len(numbers)))
    else:
        result = expected
        encode = lambda: repr(numbers).encode()  # noqa: E731
        decode = lambda body: json.loads(body)["result"]  # noqa: E731
    reply = json.dumps({"jsonrpc": "2.0", "id": 1, "result": result},
                       separators=(",", ":")).encode()
    payload = encode()

    workers: Dict[int, my_module.Worker] = {}
    for size in sizes:
        w = my_module.Worker(args.worker, chunk_size=size, encodings=(args.encoding,))
        if args.encoding not in w.info.get("encodings", ["json"]):
            sys.exit(f"the worker does not announce the {args.encoding} encoding")
        assert w.calculate_squares(numbers) == expected  # warm up, and check
        workers[size] = w

    cases: Dict[str, Callable[[], object]] = {
        "python": lambda: [x * x for x in numbers],
        "codec": lambda: (encode(), decode(reply)),
        "pipe echo": lambda: pipe_echo(payload),
    }
    for size, w in workers.items():
        label = f"chunk {size}" if size < args.n else "one request"
        cases[label] = (lambda w=w: w.calculate_squares(numbers))

    best: Dict[str, float] = {name: float("inf") for name in cases}
    for _ in range(args.runs):
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    for w in workers.values():
        w.close()

    info = my_module.Worker(args.worker)
    parallelism = info.info["parallelism"]
    info.close()
    print(f"{args.n} random u32 per call, {args.encoding} encoding, best of {args.runs}; worker parallelism "
          f"{parallelism}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    print(f"{'case':<16}{'ms':>10}{'/ codec':>10}{'/ python':>10}")
    for name, seconds in best.items():
        print(f"{name:<16}{seconds * 1e3:>10.1f}{seconds / best['codec']:>10.2f}"
              f"{seconds / best['python']:>10.2f}")


if __name__ == "__main__":
    main()
