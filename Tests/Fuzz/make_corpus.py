#!/usr/bin/env python3
"""Write the fuzzer's seed corpus from the conformance vectors (run by `make fuzz`).

    python3 Tests/Fuzz/make_corpus.py OUT_DIR [--max-len BYTES]

For every case of protocol/vectors/*.json: one seed with everything the case writes to the
worker (its frames and raw bytes, in order), and one seed per frame body it sends. Seeds longer
than --max-len are left out (the fuzzer would cut them). Generated at run time, never committed:
the vectors are the source. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "protocol"))
import conformance  # noqa: E402  (the vectors' own reader, so seeds are exactly what is sent)

UNFRAMED_FORMS = {"raw_hex", "raw_text"}
SAMPLE_PREFIX = "conformance-sample-"
SHM_INITIALIZE = conformance.framed(conformance.dumps(
    {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"shmPrefix": SAMPLE_PREFIX}}).encode())


def framed_bytes(step) -> bytes:
    """What a step writes to the worker: its bytes, or a shm template rendered with the sample
    segments' values (a pid, fds and names no process of the fuzzer has: refused, as it should)."""
    if step.kind == "bytes":
        return step.data
    if step.kind == "template":
        return conformance.framed(conformance.dumps(step.sent_value).encode("utf-8"))
    return b""


def bodies_of(item, sample) -> list[bytes]:
    """The frame body an item of `send` carries: none for raw bytes and directives."""
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in UNFRAMED_FORMS:
        return []
    data = framed_bytes(conformance.parse_step(item, sample))
    return [data[4:]] if data else []


def packed_seeds() -> list[bytes]:
    """Requests in the packed encoding (protocol 1.1), which the vectors may not cover yet."""
    seeds = []
    for numbers in ([], [0], [1, 2, 3], [4294967295, 0, 65536, 7]):
        text = base64.b64encode(struct.pack(f"<{len(numbers)}I", *numbers)).decode()
        seeds.append(conformance.dumps({"jsonrpc": "2.0", "id": 1, "method": "calculate_squares",
                                        "params": {"numbersPacked": text}}).encode())
    return seeds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-len", type=int, default=65536)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    seeds: list[bytes] = packed_seeds()
    for path in sorted((ROOT / "protocol" / "vectors").glob("*.json")):
        document = conformance.loads(path.read_text(encoding="utf-8"))
        for raw in document["cases"]:
            segments = conformance.parse_segments(raw["segments"], raw["id"]) if "segments" in raw else {}
            sample = conformance.ShmContext(segments, SAMPLE_PREFIX, sample=True)
            steps = [conformance.parse_step(item, sample) for item in raw["send"]]
            # A case of the shared-memory plane starts as the runner starts it: an initialize
            # arming the prefix of the sample names.
            head = SHM_INITIALIZE if segments or any(step.kind == "template" for step in steps) else b""
            seeds.append(head + b"".join(framed_bytes(step) for step in steps))
            for item in raw["send"]:
                seeds.extend(bodies_of(item, sample))
    written = 0
    for seed in seeds:
        if len(seed) > args.max_len:
            continue
        # Named by content, as libFuzzer names what it adds: duplicates collapse.
        target = args.out / hashlib.sha1(seed).hexdigest()
        if not target.exists():
            target.write_bytes(seed)
            written += 1
    print(f"make_corpus.py: {written} new seeds in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
