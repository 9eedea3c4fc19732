"""``python -m my_module``: numbers from the command line or stdin, and its exit statuses
(README, Command line): 0 success, 1 bad number or worker failure, 2 usage error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Tuple

SRC = Path(__file__).resolve().parents[2] / "src"


def cli(*args: str, stdin: str = "") -> Tuple[int, str, str]:
    out = subprocess.run([sys.executable, "-m", "my_module", *args], input=stdin, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(SRC)})
    return out.returncode, out.stdout, out.stderr


def test_numbers_on_the_command_line() -> None:
    assert cli("1", "2", "4294967295")[:2] == (0, "1 4 18446744065119617025\n")


def test_numbers_from_stdin_when_none_are_given() -> None:
    assert cli(stdin="3 4\n5\n")[:2] == (0, "9 16 25\n")
    assert cli(stdin="")[:2] == (0, "\n")


def test_exit_statuses() -> None:
    code, _, err = cli("1", "-2")
    assert code == 1 and "element 1" in err
    code, _, err = cli("x")
    assert code == 1 and "not an integer" in err
    code, _, err = cli(stdin="1 2.5")
    assert code == 1 and "not an integer" in err
    code, _, err = cli("--worker", "/nonexistent/squares-worker", "1")
    assert code == 1 and "does not exist" in err
    assert cli("--no-such-flag")[0] == 2
