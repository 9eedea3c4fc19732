"""The command line: run the vectors against a worker command and print `N passed, N failed`."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .jsonexact import short
from .schema import SchemaError, Validator
from .macros import VectorError
from .vectors import load_cases
from .driver import Outcome, describe_exit, run_case, skip_reasons


PROTOCOL = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 10.0


def report(outcome: Outcome, out) -> None:
    case = outcome.case
    print(f"FAIL {case.name}: {case.description}", file=out)
    for problem in outcome.problems:
        print(f"    {problem}", file=out)
    print("    expected replies "
          f"({'in this order' if case.ordered else 'in any order'}), exit status {case.exit_code}:",
          file=out)
    for item in case.expect or ["(none)"]:
        print(f"      {short(item)}", file=out)
    print(f"    got ({describe_exit(outcome.exit_code)}, {outcome.seconds:.2f}s):", file=out)
    for item in outcome.replies or ["(no reply frames)"]:
        print(f"      {short(item)}", file=out)
    tail = outcome.stderr_tail.strip().splitlines()[-10:]
    if tail:
        print("    worker stderr (tail):", file=out)
        for line in tail:
            print(f"      | {line[:300]}", file=out)


def main(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1:]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(
        prog="conformance.py",
        description="Run the protocol conformance vectors against a worker command.",
        usage="%(prog)s [--filter REGEX] [--vectors DIR] [--timeout SEC] -- WORKER_COMMAND...")
    parser.add_argument("--filter", help="run only cases whose name (file/id) matches this regex")
    parser.add_argument("--vectors", type=Path, default=PROTOCOL / "vectors",
                        help="directory of case files (default: vectors/ beside this script)")
    parser.add_argument("--schemas", type=Path, default=PROTOCOL / "schemas",
                        help="directory of JSON Schemas (default: schemas/ beside this script)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds a case may take before the worker is killed "
                             f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--no-skip", action="store_true",
                        help="fail, rather than skip, a case needing an encoding the worker "
                             "does not list (for a worker that must serve shm)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print passing cases too")
    args = parser.parse_args(own)
    try:
        cases = load_cases(args.vectors)
    except (VectorError, ValueError, OSError) as error:
        print(f"conformance.py: bad vectors: {error}", file=sys.stderr)
        return 2
    if args.filter:
        pattern = re.compile(args.filter)
        cases = [case for case in cases if pattern.search(case.name)]
    if args.list:
        for case in cases:
            print(f"{case.name}: {case.description}")
        return 0
    if not command:
        parser.error("no worker command: put it after --")
    validator = Validator(args.schemas)
    passed = failed = 0
    skipped = skip_reasons(cases, command, args.timeout)
    if skipped:
        by_reason: dict[str, list[str]] = {}
        for name, reason in skipped.items():
            by_reason.setdefault(reason, []).append(name)
        for reason, names in by_reason.items():
            if args.no_skip:
                for name in names:
                    print(f"FAIL {name}: not run (--no-skip): {reason}")
                continue
            print(f"SKIP {len(names)} cases: {reason}")
            if args.verbose:
                for name in names:
                    print(f"skip {name}")
        sys.stdout.flush()
        if args.no_skip:
            failed += len(skipped)
    for case in cases:
        if case.name in skipped:
            continue
        try:
            outcome = run_case(case, command, args.timeout, validator)
        except SchemaError as error:
            print(f"conformance.py: bad schemas: {error}", file=sys.stderr)
            return 2
        if outcome.passed:
            passed += 1
            if args.verbose:
                print(f"ok   {case.name} ({outcome.seconds:.2f}s)")
        else:
            failed += 1
            report(outcome, sys.stdout)
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed"
          + (f", {len(skipped)} skipped" if skipped and not args.no_skip else ""))
    return 1 if failed or not cases else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
