"""``python -m my_module``: numbers from the command line or stdin, and its exit statuses (``__main__``'s
docstring): 0 success, 1 bad number or worker failure, 2 usage error, 141 stdout closed early."""

from __future__ import annotations

import io
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

import my_module
from my_module import __main__ as cli_module

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}
CLI = [sys.executable, "-m", "my_module"]


def cli(*args: str, stdin: str = "") -> Tuple[int, str, str]:
    out = subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=60, env=ENV)
    return out.returncode, out.stdout, out.stderr


def one_error_line(stderr: str) -> str:
    """The CLI's own error line, which must be the last and only line of its own (no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert lines and lines[-1].startswith("python -m my_module: error: "), stderr
    return lines[-1]


def test_numbers_on_the_command_line() -> None:
    assert cli("1", "2", "4294967295")[:2] == (0, "1 4 18446744065119617025\n")


def test_stdin_gives_a_line_of_squares_per_line_of_numbers() -> None:
    assert cli(stdin="3 4\n5\n")[:2] == (0, "9 16\n25\n")
    # Blank lines stay, any whitespace separates, CRLF is a line end, and a last line without its newline gets one.
    assert cli(stdin="1\n\n2\t 3  \r\n\n4")[:2] == (0, "1\n\n4 9\n\n16\n")
    assert cli(stdin="")[:2] == (0, "")


def test_a_line_longer_than_a_piece_is_cut_between_numbers_and_printed_whole() -> None:
    numbers = list(range(4294967295 - 150_000, 4294967296))  # ~1.6 MB on one line: several pieces
    code, out, err = cli(stdin=" ".join(map(str, numbers)) + "\n1 2\n")
    assert (code, err) == (0, "")
    assert out == " ".join(str(n * n) for n in numbers) + "\n1 4\n"


class Trickle(io.RawIOBase):
    """A stream that hands out ``step`` bytes per read, like a slow pipe (always ready to ``select``)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step
        self.ready, writer = os.pipe()
        os.write(writer, b"x")
        os.close(writer)

    def fileno(self) -> int:
        return self.ready

    def close(self) -> None:
        os.close(self.ready)
        super().close()

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        piece, self.data = self.data[: min(self.step, size)], self.data[min(self.step, size):]
        return piece


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_pieces_never_cut_a_number(step: int) -> None:
    data = b"12 345\n6789\t0 1\n\n22 333 4444"
    with Trickle(data, step) as stream:
        pieces = list(cli_module.pieces(stream))  # type: ignore[arg-type]
    assert None not in pieces, "a stream with more to read at once is read on"
    assert b"".join(pieces) == data
    assert all(piece[-1:].isspace() for piece in pieces[:-1] if piece)
    assert [n for piece in pieces for n in piece.split()] == data.split()


def test_pieces_cut_inside_a_line_join_up_again(worker: my_module.Worker) -> None:
    out = io.StringIO()
    cli_module.square_lines(worker, [b"1 2 ", b"3\n4", None, b" ", b"\n", b"", b"5 ", None, b"6"], out, 1)
    assert out.getvalue() == "1 4 9\n16\n25 36\n"


def test_squares_come_as_soon_as_their_line_is_typed() -> None:
    """No waiting for a full window or the end of stdin when nothing more is there yet."""
    squares = subprocess.Popen(CLI, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV)
    assert squares.stdin and squares.stdout
    try:
        for number in (3, 4294967295, 12):
            squares.stdin.write(f"{number}\n".encode())
            squares.stdin.flush()
            assert squares.stdout.readline() == f"{number * number}\n".encode()
        squares.stdin.close()
        assert squares.wait(timeout=30) == 0 and squares.stdout.read() == b""
    finally:
        squares.kill()
        squares.wait()


@pytest.mark.parametrize(("stdin", "line", "token"), [
    ("1\n2\nx\n", 3, "'x'"),
    ("1\n4294967296\n", 2, "'4294967296'"),
    ("7 8\n\n9 -3\n", 3, "'-3'"),
    ("1\n2.5\n", 2, "'2.5'"),
    ("+5\n", 1, "'+5'"),
])
def test_a_bad_number_on_stdin_names_its_line(stdin: str, line: int, token: str) -> None:
    code, _, err = cli(stdin=stdin)
    assert code == 1
    assert one_error_line(err) == f"python -m my_module: error: line {line}: {token} is not a u32 (0 <= n <= 4294967295)"


def test_squares_before_a_bad_piece_are_written_first(worker: my_module.Worker) -> None:
    out = io.StringIO()
    with pytest.raises(ValueError, match=r"^line 3: 'x' is not a u32"):
        cli_module.square_lines(worker, [b"1\n", b"2\n", b"x\n", b"4\n"], out, 1)
    assert out.getvalue() == "1\n4\n"


def test_a_bad_number_on_the_command_line_is_named() -> None:
    code, _, err = cli("1", "-2")
    assert code == 1 and one_error_line(err).endswith("error: '-2' is not a u32 (0 <= n <= 4294967295)")
    code, _, err = cli("x")
    assert code == 1 and "'x' is not a u32" in one_error_line(err)


@pytest.mark.parametrize(("args", "says"), [
    (["--timeout", "-1", "1"], "argument --timeout: not a positive number of seconds: -1.0"),
    (["--timeout", "0", "1"], "argument --timeout: not a positive number of seconds: 0.0"),
    (["--timeout", "nan", "1"], "argument --timeout: not a positive number of seconds: nan"),
    (["--timeout", "abc", "1"], "argument --timeout: invalid float value: 'abc'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_usage_errors_exit_2_in_one_line(args: List[str], says: str) -> None:
    code, out, err = cli(*args)
    assert (code, out) == (2, "")
    assert err == f"python -m my_module: error: {says} (see --help)\n"


def test_a_missing_worker_exits_1_saying_so() -> None:
    code, _, err = cli("--worker", "/nonexistent/squares-worker", "1")
    assert code == 1 and "does not exist" in one_error_line(err)


def test_a_program_that_is_not_a_worker_is_named_as_such() -> None:
    cat = shutil.which("cat")
    assert cat
    code, out, err = cli("--worker", cat, "1")
    assert (code, out) == (1, "")
    assert one_error_line(err).startswith(f"python -m my_module: error: {cat} is not a squares-worker: ")


def test_info_prints_the_initialize_result() -> None:
    code, out, _ = cli("--info")
    assert code == 0 and "calculate_squares" in json.loads(out)["methods"]


def test_no_arguments_at_a_terminal_prints_the_usage() -> None:
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(CLI, stdin=terminal, capture_output=True, text=True, timeout=60, env=ENV)
    finally:
        os.close(controller)
        os.close(terminal)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("usage: python -m my_module [-h]"), done.stderr


def numbers_from_seq(count: int) -> subprocess.Popen:
    """``seq 1 count`` as a process whose stdout feeds the CLI, written by Python (no dependence on coreutils)."""
    script = f"import sys\nfor i in range(1, {count} + 1, 100_000):\n" \
             f"    sys.stdout.write(''.join(f'{{n}}\\n' for n in range(i, min(i + 100_000, {count} + 1))))"
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)


def test_a_closed_stdout_ends_it_quietly() -> None:
    """``seq 2000000 | python -m my_module | head -c 20``: no traceback, exit 141 as a shell reports SIGPIPE."""
    numbers = numbers_from_seq(2_000_000)
    squares = subprocess.Popen(CLI, stdin=numbers.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert numbers.stdout and squares.stdout and squares.stderr
    numbers.stdout.close()
    assert squares.stdout.read(20) == b"1\n4\n9\n16\n25\n36\n49\n64"[:20]
    squares.stdout.close()  # as head exits
    assert squares.wait(timeout=60) == 128 + signal.SIGPIPE
    assert squares.stderr.read() == b""
    numbers.kill()
    numbers.wait()


PEAK_PROBE = """
import sys
from my_module.__main__ import main
code = main([])
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) * 1024, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak RSS from /proc (Linux)")
def test_stdin_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    """5,000,000 numbers (~40 MB of text, ~500 MB as one list of ints and its squares) within 200 MiB of peak RSS."""
    count = 5_000_000
    numbers = numbers_from_seq(count)
    with open(tmp_path / "squares", "wb") as out:
        done = subprocess.run([sys.executable, "-c", PEAK_PROBE], stdin=numbers.stdout, stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=55, env=ENV)
    numbers.wait()
    assert done.returncode == 0, done.stderr
    peak = int(done.stderr.split()[-1])
    assert peak <= 200 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB for {count:,} numbers from stdin"
    with open(tmp_path / "squares") as squares:
        for start in range(1, count + 1, 100_000):
            expected = "".join(f"{n * n}\n" for n in range(start, min(start + 100_000, count + 1)))
            assert squares.read(len(expected)) == expected, f"squares of lines {start}.."
        assert squares.read() == ""


def test_ctrl_c_exits_130_quietly() -> None:
    squares = subprocess.Popen(CLI, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert squares.stdin and squares.stdout and squares.stderr
    squares.stdin.write(b"7\n")
    squares.stdin.flush()
    try:
        assert squares.stdout.readline() == b"49\n"  # the worker runs, and the CLI waits for more stdin
        squares.send_signal(signal.SIGINT)
        assert squares.wait(timeout=30) == 130
        assert squares.stderr.read() == b""
    finally:
        squares.kill()
        squares.wait()
