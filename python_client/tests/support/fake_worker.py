"""A small, deliberately faulty stand-in for squares-worker (stdlib only).

Usage: python fake_worker.py MODE [--once MARKER] [--ignore-shutdown]

In mode ``ok`` it serves initialize, calculate_squares and shutdown correctly, one request at
a time. Every other mode misbehaves in one way, named by the mode:

  exit-at-start     write a fatal line to stderr and exit 3 before reading anything
  stall-at-start    read requests, never answer anything (not even initialize)
  garbage           answer initialize, then write unframed text instead of a reply
  garbage-json      answer initialize, then a well-framed body that is not JSON
  garbage-at-start  write unframed text instead of the initialize reply
  unknown-id        answer initialize, then reply with an id that was never sent
  wrong-length      answer initialize, then a result with one element too many
  stall             answer initialize, then read calculate_squares but never answer it
  crash-mid-call    answer initialize, then on calculate_squares say why and exit 70
  flood-stderr      serve correctly, writing 2 MiB to stderr before every reply
  version-2         answer initialize with protocolVersion "2.0"
  stop-reading      answer initialize, then never read stdin again
  huge-header       answer initialize, then on calculate_squares announce a 4 GiB - 1 frame
                    (header ff ff ff ff) followed by a few bytes, and go quiet
  chaos             answer initialize, then for each calculate_squares pick at random
                    (seeded by --seed and the pid): answer right (most often), crash (exit
                    70), write garbage, never answer it, answer late, flood stderr first,
                    or answer with the wrong length (weights: CHAOS below)

``--once MARKER``: misbehave only while MARKER does not exist (it is created on the first
misbehaviour), so a second process started with the same MARKER behaves: this is how the
tests see that a call is retried, or that a worker is replaced, by a fresh process.
``--ignore-shutdown``: ignore shutdown requests, end of input and SIGTERM (only SIGKILL works).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import struct
import sys
import time

HEADER = struct.Struct("!I")


def read_exact(n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def read_message():
    header = read_exact(4)
    if len(header) < 4:
        return None
    (length,) = HEADER.unpack(header)
    return json.loads(read_exact(length))


def write_raw(data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(1, view)
        view = view[written:]


def write_message(message) -> None:
    body = json.dumps(message).encode()
    write_raw(HEADER.pack(len(body)) + body)


def reply(rid, result) -> None:
    write_message({"jsonrpc": "2.0", "id": rid, "result": result})


def idle_forever() -> None:
    while True:
        time.sleep(3600)


def initialize_result(version: str = "1.0"):
    return {
        "protocolVersion": version,
        "serverInfo": {"name": "fake-worker", "version": "0"},
        "methods": ["initialize", "calculate_squares", "shutdown", "$/cancel"],
        "limits": {"maxFrameBytes": 67108864, "maxInFlight": 64, "maxNumber": 4294967295},
        "parallelism": 1,
        "encodings": ["json"],
    }


CHAOS = (  # (action, weight) for each calculate_squares in mode chaos
    ("ok", 80),
    ("crash", 5),
    ("garbage", 4),
    ("stall", 3),
    ("late", 3),
    ("flood", 3),
    ("wrong-length", 2),
)


def flood_stderr(total: int) -> None:
    line = b"info fake worker: flooding stderr " + b"x" * 90 + b"\n"
    for _ in range(total // len(line)):
        os.write(2, line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--once", metavar="MARKER")
    parser.add_argument("--ignore-shutdown", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed * 1_000_003 + os.getpid())
    mode = args.mode
    if args.once:
        if os.path.exists(args.once):
            mode = "ok"
        else:
            open(args.once, "w").close()
    if args.ignore_shutdown:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stderr.write(f"fake worker pid {os.getpid()} starting in mode {mode}\n")
    sys.stderr.flush()

    if mode == "exit-at-start":
        sys.stderr.write("fatal: fake worker refuses to start\n")
        sys.exit(3)

    while True:
        message = read_message()
        if message is None:
            if args.ignore_shutdown:
                idle_forever()
            return
        method, rid = message.get("method"), message.get("id")
        if "id" not in message:
            continue  # notifications ($/cancel): nothing to do, requests run one at a time
        if mode == "stall-at-start":
            continue
        if method == "initialize":
            if mode == "stop-reading":
                reply(rid, initialize_result())
                idle_forever()
            if mode == "garbage-at-start":
                write_raw(b"this is not a frame, it is a log line on stdout\n")
                continue
            reply(rid, initialize_result("2.0" if mode == "version-2" else "1.0"))
        elif method == "shutdown":
            if args.ignore_shutdown:
                continue
            reply(rid, None)
            return
        elif method == "calculate_squares":
            params = message.get("params")
            numbers = params["numbers"] if isinstance(params, dict) else params[0]
            if mode == "chaos":
                action = rng.choices([a for a, _ in CHAOS], [w for _, w in CHAOS])[0]
                if action == "crash":
                    sys.stderr.write("fake worker: chaos crash\n")
                    sys.stderr.flush()
                    os._exit(70)
                if action == "stall":
                    continue
                if action == "garbage":
                    write_raw(b"chaos: this is not a frame\n")
                    continue
                if action == "late":
                    time.sleep(rng.uniform(0.05, 0.3))
                if action == "flood":
                    flood_stderr(256 * 1024)
                extra = [0] if action == "wrong-length" else []
                reply(rid, [n * n for n in numbers] + extra)
                continue
            if mode == "huge-header":
                write_raw(HEADER.pack(0xFFFFFFFF) + b"{" * 64)
                idle_forever()
            if mode == "stall":
                continue
            if mode == "crash-mid-call":
                sys.stderr.write("fake worker: crashing in the middle of calculate_squares\n")
                sys.stderr.flush()
                os._exit(70)
            if mode == "garbage":
                write_raw(b"this is not a frame, it is a log line on stdout\n")
                continue
            if mode == "garbage-json":
                write_raw(HEADER.pack(9) + b"{not json")
                continue
            if mode == "unknown-id":
                reply(rid + 1000, [n * n for n in numbers])
                continue
            if mode == "wrong-length":
                reply(rid, [n * n for n in numbers] + [0])
                continue
            if mode == "flood-stderr":
                flood_stderr(2 * 1024 * 1024)
            reply(rid, [n * n for n in numbers])
        else:
            write_message({"jsonrpc": "2.0", "id": rid,
                           "error": {"code": -32601, "message": "Method not found"}})


if __name__ == "__main__":
    main()
