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


def bodies_of(item) -> list[bytes]:
    """The frame body an item of `send` carries: none for raw bytes and directives."""
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in UNFRAMED_FORMS:
        return []
    step = conformance.parse_step(item)
    return [step.data[4:]] if step.kind == "bytes" else []


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
            steps = [conformance.parse_step(item) for item in raw["send"]]
            seeds.append(b"".join(step.data for step in steps if step.kind == "bytes"))
            for item in raw["send"]:
                seeds.extend(bodies_of(item))
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
