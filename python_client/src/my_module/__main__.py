"""Command line: ``python -m my_module 1 2 3`` prints ``1 4 9``; with no numbers it reads them
from stdin (whitespace-separated); ``--info`` prints the worker's ``initialize`` result as JSON.

Exit status: 0 on success, 1 for a bad number or a worker failure (the message on stderr),
2 for a usage error (argparse's), 130 when interrupted (Ctrl-C)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import List, Optional

from ._errors import WorkerError
from ._worker import Worker


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m my_module", description="Print the exact squares of u32 numbers.")
    parser.add_argument("numbers", nargs="*", help="integers 0 <= n <= 4294967295 (none: read stdin)")
    parser.add_argument("--info", action="store_true", help="print the worker's initialize result (JSON) and exit")
    parser.add_argument("--worker", metavar="COMMAND", help="worker path or command line (default: see README)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (default: never)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show my_module's and the worker's logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(name)s: %(levelname)s: %(message)s")
    try:
        words = args.numbers if args.numbers or args.info else sys.stdin.read().split()
        try:
            numbers = [int(word) for word in words]
        except ValueError as exc:
            raise TypeError(f"not an integer: {exc}") from None
        with Worker(args.worker, timeout=args.timeout) as worker:
            if args.info:
                print(json.dumps(worker.info, indent=2, sort_keys=True))
            else:
                print(" ".join(map(str, worker.calculate_squares(numbers))))
    except (WorkerError, TimeoutError, TypeError, OverflowError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
