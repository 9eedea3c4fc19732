"""``python -m my_module 1 2 3`` (or ``squares 1 2 3``) prints ``1 4 9``; with no numbers, the squares of stdin's as
they come, a line per line. Exit status: 0 done; 1 a bad number (its line named) or a worker failure; 2 a usage error;
130 Ctrl-C; 141 stdout closed early (what a shell reports for ``seq`` or ``cat`` under ``| head``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import sys
from itertools import chain, islice
from typing import IO, Any, Iterable, Iterator, List, Optional, TextIO, Tuple

from ._errors import WorkerError
from ._protocol import MAX_NUMBER
from ._worker import Worker

PIECE_BYTES = 1 << 16  # per call at most: ~8,000 lines of 7 digits (1 << 15 to 1 << 20: no faster, more memory)
WINDOW = 4  # calls in flight: the next piece is read and converted while the worker squares the ones before
NOT_DIGITS = b"0123456789 \t\n\r\x0b\x0c"  # what bytes.translate deletes from a piece of decimal numbers


def pieces(stream: IO[bytes]) -> Iterator[Optional[bytes]]:
    """``stream`` as it arrives, in pieces of at most ~``PIECE_BYTES`` that end after whitespace (never in a number),
    and None whenever it has nothing more at once (a person typing, a slow producer): the squares so far are due."""
    rest = b""
    while True:
        if not select.select([stream], [], [], 0)[0]:
            yield None
        data = stream.read1(PIECE_BYTES)  # type: ignore[attr-defined]  # stdin.buffer: a BufferedReader
        if not data:
            break
        data = rest + data
        cut = max(data.rfind(b"\n"), data.rfind(b" "), data.rfind(b"\t")) + 1
        rest = data[cut:]
        yield data[:cut]
    yield rest


def square_lines(worker: Worker, source: Iterable[Optional[bytes]], out: TextIO, line: Optional[int]) -> None:
    """Write the squares of ``source``'s numbers to ``out`` as they were laid out, ``WINDOW`` pieces in flight and all
    of them written at each None."""
    window: List[Tuple[Any, List[List[bytes]], Optional[int]]] = []  # (a Future, None for a piece with a bad number; the piece's rows; its first line)
    mid_line = False  # out's last line is unfinished: a piece ended inside a line
    for piece in chain(source, [None]):
        if piece is not None:
            rows = [part.split() for part in piece.split(b"\n")]
            numbers = [MAX_NUMBER + 1] if piece.translate(None, NOT_DIGITS) else [int(t) for row in rows for t in row]
            window.append((worker.submit(numbers) if max(numbers, default=0) <= MAX_NUMBER else None, rows, line))
            line = None if line is None else line + len(rows) - 1
        while window and (piece is None or len(window) >= WINDOW):
            future, rows, at = window.pop(0)
            if future is None:  # name the first token that is not a u32, and its line
                i, token = next((i, token) for i, row in enumerate(rows) for token in row
                                if not (token.isdigit() and int(token) <= MAX_NUMBER))
                where = "" if at is None else f"line {at + i}: "
                raise ValueError(f"{where}{token.decode(errors='replace')!r} is not a u32 (0 <= n <= {MAX_NUMBER})")
            squares = map(str, future.result())
            text = "\n".join(" ".join(islice(squares, len(row))) for row in rows)
            text = " " + text if mid_line and text[:1] not in ("", "\n") else text
            mid_line = not text.endswith("\n") if text else mid_line
            out.write(text)
            out.flush()
    out.write("\n" if mid_line else "")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m my_module" if sys.argv[0].endswith("__main__.py") else None,
                                     description="Print the exact squares of u32 numbers (0 <= n <= 4294967295).")
    parser.error = lambda message: parser.exit(2, f"{parser.prog}: error: {message} (see --help)\n")  # type: ignore
    parser.add_argument("numbers", nargs="*", help="decimal numbers (none: read stdin, a line of squares per line)")
    parser.add_argument("--info", action="store_true", help="print the worker's initialize result (JSON) and exit")
    parser.add_argument("--worker", metavar="COMMAND", help="the worker's path or command line (default: "
                        "$MY_MODULE_WORKER, else the package's own, else squares-worker on PATH)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="limit per call (each piece of stdin is one)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show my_module's and the worker's logs")
    args = parser.parse_args(argv)
    if args.timeout is not None and not args.timeout > 0:  # NaN too
        parser.error(f"argument --timeout: not a positive number of seconds: {args.timeout}")
    if not (args.numbers or args.info) and sys.stdin.isatty():
        parser.print_usage(sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        with Worker(args.worker, timeout=args.timeout) as worker:
            if args.info:
                print(json.dumps(worker.info, indent=2, sort_keys=True), flush=True)
            elif args.numbers:
                square_lines(worker, [b" ".join(map(os.fsencode, args.numbers)) + b"\n"], sys.stdout, None)
            else:
                square_lines(worker, pieces(sys.stdin.buffer), sys.stdout, 1)
    except BrokenPipeError:  # the reader left (| head): end quietly; stdout goes to /dev/null for the exit's flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OverflowError, WorkerError, TimeoutError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
