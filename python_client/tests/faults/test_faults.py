"""Every fault ends in the documented exception within its time bound, never a hang.

Each test says what it injects and asserts what the caller sees.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import my_module
from my_module._protocol import Method

from conftest import assert_reaped, in_flight, request, submit_request, wait_until

SRC = Path(__file__).resolve().parents[2] / "src"


# -- the worker dies ------------------------------------------------------------------------------


def test_kill_9_mid_request_fails_it_with_worker_crashed(test_methods_worker: my_module.Worker) -> None:
    # Injected: SIGKILL while a (non-retried) test/sleep request is in flight.
    w = test_methods_worker
    pending = submit_request(w, Method.TEST_SLEEP.value, {"ms": 20_000})
    wait_until(lambda: in_flight(w) == 1, 10, "the sleep request is in flight")
    pid = w.pid
    os.kill(pid, signal.SIGKILL)
    # Seen: WorkerCrashedError naming the signal, well before the 20 s sleep would end.
    with pytest.raises(my_module.WorkerCrashedError) as info:
        pending.result(timeout=10)
    assert info.value.returncode == -signal.SIGKILL
    assert info.value.pid == pid and "SIGKILL" in str(info.value)
    assert_reaped(pid)
    # The next call starts a fresh worker.
    assert w.calculate_squares([4]) == [16]
    assert w.pid not in (None, pid)


def test_kill_9_mid_calculate_squares_is_retried_transparently(worker: my_module.Worker) -> None:
    # Injected: SIGKILL while a big chunked calculate_squares call is in flight.
    numbers = list(range(2_000_000))
    worker.calculate_squares([1])
    first_pid = worker.pid
    result = {}

    def call() -> None:
        result["value"] = worker.calculate_squares(numbers)

    t = threading.Thread(target=call)
    t.start()
    wait_until(lambda: in_flight(worker) > 0, 10, "chunks are in flight")
    os.kill(first_pid, signal.SIGKILL)
    t.join(timeout=40)
    assert not t.is_alive()
    # Seen: the right answer, computed by a second worker process (the call is pure).
    assert result["value"] == [n * n for n in numbers]
    assert worker.pid not in (None, first_pid)
    assert_reaped(first_pid)


def test_crash_mid_call_twice_raises_worker_crashed_with_status_and_stderr(fake) -> None:
    # Injected: a worker that exits 70 on every calculate_squares, after a stderr line.
    with my_module.Worker(fake("crash-mid-call")) as w:
        started = time.monotonic()
        with pytest.raises(my_module.WorkerCrashedError) as info:
            w.calculate_squares([1, 2, 3], timeout=20)
        # Seen: exit status 70 and its last stderr lines (after one retry on a fresh process).
        assert info.value.returncode == 70
        assert any("crashing in the middle" in line for line in info.value.stderr_tail)
        assert "exited with status 70" in str(info.value)
        assert time.monotonic() - started < 10


def test_crash_once_is_retried_on_a_fresh_worker(fake) -> None:
    # Injected: the first process crashes mid-call; the second one behaves.
    with my_module.Worker(fake("crash-mid-call", once=True)) as w:
        assert w.calculate_squares([1, 2, 3], timeout=20) == [1, 4, 9]


def test_exit_at_start_raises_worker_crashed(fake) -> None:
    # Injected: a worker that exits 3 before reading anything.
    with my_module.Worker(fake("exit-at-start")) as w:
        with pytest.raises(my_module.WorkerCrashedError) as info:
            w.calculate_squares([1], timeout=20)
        assert info.value.returncode == 3
        assert "fatal: fake worker refuses to start" in info.value.stderr_tail


# -- the worker speaks garbage --------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode", ["garbage", "garbage-json", "garbage-at-start", "unknown-id", "wrong-length", "version-2"]
)
def test_garbage_raises_protocol_error_and_the_worker_is_replaced(fake, mode) -> None:
    # Injected: unframed text / a non-JSON body / garbage instead of initialize / a reply
    # with an unknown id / a result of the wrong length / protocol version 2.0.
    with my_module.Worker(fake(mode, once=True)) as w:
        started = time.monotonic()
        with pytest.raises(my_module.ProtocolError):
            w.calculate_squares([1, 2, 3], timeout=20)
        assert time.monotonic() - started < 10
        # Seen: ProtocolError; the liar was killed and reaped, and a fresh worker answers.
        assert w.calculate_squares([1, 2, 3], timeout=20) == [1, 4, 9]


def test_protocol_error_kills_and_reaps_the_worker(fake) -> None:
    with my_module.Worker(fake("garbage")) as w:
        w.info  # started, initialized
        pid = w.pid
        with pytest.raises(my_module.ProtocolError, match="garbage"):
            w.calculate_squares([1], timeout=20)
        wait_until(lambda: w.pid is None, 10, "the connection is marked dead")
        assert_reaped(pid)


# -- the worker stalls ----------------------------------------------------------------------------


def test_stalled_worker_times_out(fake) -> None:
    # Injected: a worker that reads calculate_squares and never answers.
    with my_module.Worker(fake("stall"), timeout=0.5) as w:
        w.info
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            w.calculate_squares([1, 2, 3])
        elapsed = time.monotonic() - started
        # Seen: TimeoutError after the 0.5 s timeout, not later.
        assert 0.45 <= elapsed < 2.0, elapsed


def test_stalled_worker_times_out_through_submit_and_async(fake) -> None:
    with my_module.Worker(fake("stall")) as w:
        w.info
        future = w.submit([1], timeout=0.3)
        with pytest.raises(TimeoutError):
            future.result(timeout=5)  # the Worker enforces 0.3 s itself
        with pytest.raises(TimeoutError):
            asyncio.run(w.calculate_squares_async([1], timeout=0.3))


def test_worker_that_stops_reading_mid_frame_times_out_and_is_replaced(fake) -> None:
    # Injected: a worker that stops reading its stdin, with a 4 MB call (more than the pipe
    # holds): the frame in progress can neither finish nor be taken back.
    with my_module.Worker(fake("stop-reading"), timeout=0.3) as w:
        w.info
        pid = w.pid
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            w.calculate_squares(list(range(300_000)))
        # Seen: TimeoutError within the timeout plus the 1 s no-progress grace; the hung
        # worker was killed (a half-written frame cannot be resynchronised) and reaped.
        assert time.monotonic() - started < 3
        wait_until(lambda: w.pid != pid, 5, "the hung worker is gone")
        assert_reaped(pid)


def test_small_max_frame_bytes_splits_requests_and_replies(worker_command) -> None:
    with my_module.Worker(worker_command, max_frame_bytes=2048) as w:
        numbers = list(range(2**32 - 5000, 2**32))  # the longest squares there are
        assert w.calculate_squares(numbers) == [n * n for n in numbers]


def test_reply_over_the_client_frame_limit_is_a_protocol_error(fake) -> None:
    # Injected: a reply bigger than the client's max_frame_bytes (a raw request bypasses the
    # chunking that normally keeps replies under it).
    with my_module.Worker(fake("ok"), max_frame_bytes=1024) as w:
        with pytest.raises(my_module.ProtocolError, match="over the 1024-byte limit"):
            request(w, "calculate_squares", {"numbers": list(range(2**32 - 200, 2**32))})
        # Seen: ProtocolError (the body is never read into memory); the next call is fine.
        assert w.calculate_squares([3]) == [9]


def test_worker_that_never_answers_initialize_times_out(fake) -> None:
    # Injected: a worker that reads but never answers, not even initialize.
    with my_module.Worker(fake("stall-at-start"), startup_timeout=0.5) as w:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="initialize"):
            w.calculate_squares([1])
        assert time.monotonic() - started < 3


def test_timeout_cancels_the_request_in_the_worker(test_methods_worker: my_module.Worker) -> None:
    # Injected: a 20 s request with a 0.2 s timeout.
    w = test_methods_worker
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        request(w, Method.TEST_SLEEP.value, {"ms": 20_000}, timeout=0.2)
    assert time.monotonic() - started < 2
    # Seen: TimeoutError; and the worker got $/cancel: it answered the request (-32800) long
    # before the sleep would have ended, so nothing is left in flight.
    wait_until(lambda: in_flight(w) == 0, 5, "the worker answered the cancelled request")
    assert w.calculate_squares([3]) == [9]


def test_cancelling_a_future_cancels_the_request(test_methods_worker: my_module.Worker) -> None:
    w = test_methods_worker
    future = submit_request(w, Method.TEST_SLEEP.value, {"ms": 20_000})
    wait_until(lambda: in_flight(w) == 1, 10, "the request is in flight")
    assert future.cancel()
    wait_until(lambda: in_flight(w) == 0, 5, "the worker answered the cancelled request")


def test_timeout_on_a_big_call_leaves_the_worker_usable(worker: my_module.Worker) -> None:
    worker.info
    with pytest.raises(TimeoutError):
        worker.calculate_squares(range(3_000_000), timeout=0.01)
    wait_until(lambda: in_flight(worker) == 0, 20, "the worker answered or cancelled every chunk")
    assert worker.calculate_squares([6]) == [36]


# -- stderr ---------------------------------------------------------------------------------------


def test_stderr_flood_is_drained_and_logged(fake, caplog) -> None:
    # Injected: 2 MiB of stderr before every reply (32 times a pipe's buffer).
    caplog.set_level(logging.DEBUG, logger="my_module.worker")
    with my_module.Worker(fake("flood-stderr")) as w:
        for _ in range(3):
            assert w.calculate_squares([1, 2, 3], timeout=30) == [1, 4, 9]
    # Seen: correct results (the worker never blocked on stderr) and its lines as DEBUG records
    # (a crash report carries the tail; nothing is shown unless asked for).
    flood = [r for r in caplog.records if r.name == "my_module.worker" and "flooding" in r.getMessage()]
    assert len(flood) > 10_000
    assert all(r.levelno == logging.DEBUG for r in flood)


# -- lifecycle ------------------------------------------------------------------------------------


def test_close_shuts_down_and_reaps(worker_command) -> None:
    w = my_module.Worker(worker_command)
    assert w.calculate_squares([2]) == [4]
    pid = w.pid
    w.close()
    assert w.closed and w.pid is None
    assert_reaped(pid)
    w.close()  # idempotent
    with pytest.raises(my_module.WorkerError, match="closed"):
        w.calculate_squares([1])
    # Reopen: a new Worker on the same command starts a new process.
    with my_module.Worker(worker_command) as again:
        assert again.calculate_squares([3]) == [9]
        assert again.pid != pid


def test_close_lets_in_flight_calls_finish(test_methods_worker: my_module.Worker) -> None:
    w = test_methods_worker
    future = submit_request(w, Method.TEST_SLEEP.value, {"ms": 300})
    wait_until(lambda: in_flight(w) == 1, 10, "the request is in flight")
    w.close()
    assert future.result(timeout=1) is None


def test_close_kills_a_worker_that_ignores_shutdown_and_sigterm(fake) -> None:
    # Injected: a worker that ignores shutdown, end of input and SIGTERM.
    w = my_module.Worker(fake("ok", ignore_shutdown=True), shutdown_timeout=0.3)
    assert w.calculate_squares([5]) == [25]
    pid = w.pid
    started = time.monotonic()
    w.close()
    # Seen: close() returns after shutdown + SIGTERM grace periods, the process SIGKILLed and reaped.
    assert time.monotonic() - started < 3
    assert_reaped(pid)


def test_default_worker_can_be_closed_and_reopened() -> None:
    first = my_module.default_worker()
    assert my_module.calculate_squares([2]) == [4]
    pid = first.pid
    first.close()
    assert_reaped(pid)
    assert my_module.calculate_squares([3]) == [9]
    assert my_module.default_worker() is not first


def test_default_worker_is_shut_down_at_exit(tmp_path) -> None:
    script = (
        "import my_module, sys\n"
        "my_module.calculate_squares([1])\n"
        "print(my_module.default_worker().pid)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30, check=True)
    pid = int(out.stdout)
    # The interpreter waited for its worker at exit: the process is gone, not orphaned.
    wait_until(lambda: not _alive(pid), 5, f"worker {pid} is gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, never reaped by anyone) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return True


def test_worker_not_found(monkeypatch, tmp_path) -> None:
    missing = tmp_path / "no-such-worker"
    monkeypatch.setenv("MY_MODULE_WORKER", str(missing))
    with pytest.raises(my_module.WorkerNotFoundError) as info:
        my_module.Worker()
    message = str(info.value)
    assert str(missing) in message and "set MY_MODULE_WORKER to a squares-worker's path" in message


# -- fork -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_child_starts_its_own_worker_and_leaves_the_parents_alone(worker: my_module.Worker) -> None:
    assert worker.calculate_squares([2]) == [4]
    parent_pid = worker.pid
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            before = worker.pid
            result = worker.calculate_squares([1, 2, 3], timeout=20)
            mine = worker.pid
            ok = before is None and result == [1, 4, 9] and mine not in (None, parent_pid)
            worker.close()
            os.write(write_end, f"{ok} {before} {result} {mine}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    _, status = os.waitpid(child, 0)
    report = os.read(read_end, 1000).decode()
    os.close(read_end)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    assert report.startswith("True"), f"child saw: {report}"
    # The parent's worker is untouched: same process, still answering.
    assert worker.pid == parent_pid
    assert worker.calculate_squares([5]) == [25]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_fork_child_exiting_normally_does_not_shut_down_the_parents_worker() -> None:
    # The child runs atexit (closing *its* default worker) and must not touch the parent's.
    script = (
        "import os, sys, my_module\n"
        "assert my_module.calculate_squares([2]) == [4]\n"
        "parent_worker = my_module.default_worker().pid\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    assert my_module.calculate_squares([3]) == [9]\n"
        "    assert my_module.default_worker().pid != parent_worker\n"
        "    sys.exit(0)\n"
        "_, status = os.waitpid(child, 0)\n"
        "assert status == 0, status\n"
        "assert my_module.default_worker().pid == parent_worker\n"
        "assert my_module.calculate_squares([4]) == [16]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=40)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# -- quiet when nothing is wrong ------------------------------------------------------------------


def test_an_orderly_end_logs_nothing_at_warning(worker_command, caplog) -> None:
    # close(), garbage collection without close(), and interpreter exit: nothing went wrong.
    import gc

    caplog.set_level(logging.DEBUG, logger="my_module")
    with my_module.Worker(worker_command) as w:
        assert w.calculate_squares([2]) == [4]
    dropped = my_module.Worker(worker_command)
    assert dropped.calculate_squares([3]) == [9]
    pid = dropped.pid
    del dropped
    gc.collect()
    wait_until(lambda: not _alive(pid), 10, f"the dropped worker {pid} exited")
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []


def test_interpreter_exit_is_quiet_even_with_a_later_atexit_hook() -> None:
    script = (
        "import atexit, my_module\n"
        "atexit.register(lambda: None)\n"
        "w = my_module.Worker()\n"
        "assert my_module.calculate_squares([1]) == [1] and w.calculate_squares([2]) == [4]\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30, check=True)
    assert "WARNING" not in out.stderr and "ended with" not in out.stderr, out.stderr


def test_a_worker_that_really_dies_still_says_why(test_methods_worker: my_module.Worker, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="my_module")
    w = test_methods_worker
    pending = submit_request(w, Method.TEST_SLEEP.value, {"ms": 20_000})
    wait_until(lambda: in_flight(w) == 1, 10, "the sleep request is in flight")
    os.kill(w.pid, signal.SIGKILL)
    with pytest.raises(my_module.WorkerCrashedError):
        pending.result(timeout=10)
    # One line, once every request in flight was handed back (failed, or retried on a fresh worker).
    wait_until(lambda: any("SIGKILL" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records),
               5, "the crash is logged")


def test_the_start_up_timeout_says_startup_timeout_and_its_value(fake) -> None:
    with my_module.Worker(fake("stall-at-start"), startup_timeout=0.5) as w:
        with pytest.raises(TimeoutError) as caught:
            w.calculate_squares([1])
    message = str(caught.value)
    assert "startup_timeout=0.5 s" in message and "initialize" in message, message
    assert "did not finish within its timeout" not in message, message  # the call had none


def test_a_crash_retried_on_a_fresh_worker_logs_one_line(fake, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="my_module")
    with my_module.Worker(fake("crash-mid-call", once=True)) as w:
        first = w.info and w.pid
        assert w.calculate_squares([1, 2, 3], timeout=20) == [1, 4, 9]
        wait_until(lambda: any(r.levelno >= logging.WARNING for r in caplog.records), 5, "the crash is logged")
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and "\n" not in loud[0], loud
    assert f"worker pid {first} exited with status 70" in loud[0] and "1 retried on a fresh worker" in loud[0], loud
    # the worker's own stderr lines went to DEBUG, not to the user
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "my_module.worker")
