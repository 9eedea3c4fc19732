"""The one-request path of calculate_squares (a worker already running, an input that needs no
chunks): the caller hands its request over and waits, the connection's threads write and read, and
every fault ends as it does on the general path."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

import my_module
from my_module import _methods
from conftest import assert_reaped, in_flight, submit_request, wait_until


def warm(w: my_module.Worker) -> int:
    """Start the worker (initialize only), so the next call takes the one-request path."""
    w.info
    assert w.pid is not None
    return w.pid


def test_small_calls_are_answered_on_the_reader_thread_never_the_callers(worker: my_module.Worker, monkeypatch) -> None:
    # Only the connection's threads touch the pipes: a caller converts, hands over and waits.
    from my_module import _requests

    warm(worker)
    delivered_on = []
    on_reply = _requests.Call.on_reply
    monkeypatch.setattr(_requests.Call, "on_reply",
                        lambda self, *args: delivered_on.append(threading.current_thread().name) or on_reply(self, *args))
    for n in (0, 1, 10, 1000, _methods.PACKED.chunk):
        numbers = list(range(n))
        assert worker.calculate_squares(numbers) == [x * x for x in numbers]
    assert delivered_on == [f"my_module-reader-{worker.pid}"] * 5
    assert in_flight(worker) == 0


def test_small_call_errors_name_the_element(any_encoding_worker: my_module.Worker) -> None:
    warm(any_encoding_worker)
    with pytest.raises(OverflowError, match="element 2"):
        any_encoding_worker.calculate_squares([1, 2, -3])
    with pytest.raises(OverflowError, match="element 1"):
        any_encoding_worker.calculate_squares([1, 2**32, 5])
    with pytest.raises(TypeError, match="element 0"):
        any_encoding_worker.calculate_squares(["1"])
    assert any_encoding_worker.calculate_squares([True, 3]) == [1, 9]


def test_crash_during_a_small_call_is_retried_on_a_fresh_worker(fake) -> None:
    with my_module.Worker(fake("crash-mid-call", once=True)) as w:
        first = warm(w)
        assert w.calculate_squares([1, 2, 3], timeout=20) == [1, 4, 9]
        assert w.pid not in (None, first)
        assert_reaped(first)


def test_crash_during_a_small_call_twice_raises_worker_crashed(fake) -> None:
    with my_module.Worker(fake("crash-mid-call")) as w:
        warm(w)
        with pytest.raises(my_module.WorkerCrashedError) as info:
            w.calculate_squares([1, 2, 3], timeout=20)
        assert info.value.returncode == 70


@pytest.mark.parametrize("mode", ["garbage", "garbage-json", "unknown-id", "wrong-length"])
def test_garbage_during_a_small_call_is_a_protocol_error(fake, mode) -> None:
    with my_module.Worker(fake(mode, once=True)) as w:
        first = warm(w)
        with pytest.raises(my_module.ProtocolError):
            w.calculate_squares([1, 2, 3], timeout=20)
        assert w.calculate_squares([1, 2, 3], timeout=20) == [1, 4, 9]
        assert_reaped(first)


def test_small_call_times_out_and_the_reply_is_read_later(test_methods_worker: my_module.Worker) -> None:
    # A slow request on another thread holds the worker's attention; the small call's
    # timeout is its own, and whatever arrives later is read by the reader thread.
    w = test_methods_worker
    warm(w)
    slow = submit_request(w, "test/sleep", {"ms": 300})
    assert w.calculate_squares([5], timeout=5) == [25]
    slow.result(timeout=10)
    wait_until(lambda: in_flight(w) == 0, 10, "nothing is left in flight")


def test_small_calls_from_many_threads_hand_replies_over(worker: my_module.Worker) -> None:
    warm(worker)
    errors = []

    def run(seed: int) -> None:
        for i in range(150):
            numbers = list(range(seed, seed + (i % 7) * 50))
            try:
                if worker.calculate_squares(numbers, timeout=30) != [x * x for x in numbers]:
                    errors.append(f"thread {seed}: wrong result")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(f"thread {seed}: {exc!r}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert not any(t.is_alive() for t in threads)
    wait_until(lambda: in_flight(worker) == 0, 10, "nothing is left in flight")


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.skipif(
    sys.version_info < (3, 10),
    reason="before 3.10 a signal can land between a with block and its __exit__ (bpo-29988), "
    "leaving any lock held: no Python code is interrupt-safe there",
)
def test_keyboard_interrupts_during_small_calls_never_corrupt_results(worker: my_module.Worker) -> None:
    # A KeyboardInterrupt lands on the main thread between any two bytecodes, also while it
    # reads a reply. Whatever a small call was doing, later calls get right answers (the
    # worker is replaced if the interrupt cut into a read) and nothing is left hanging.
    # The timer is armed only around calls on a running worker: starting a worker is not
    # interrupt-safe (a lock taken by hand), and that is not what is tested here.
    interrupted = kills = 0

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        deadline = time.monotonic() + 2.0
        i = 0
        pid = warm(worker)
        while time.monotonic() < deadline:
            i += 1
            numbers = list(range(i % 300))
            try:
                signal.setitimer(signal.ITIMER_REAL, 0.00002 + (i % 17) * 0.00002)
                result = worker.calculate_squares(numbers, timeout=20)
                signal.setitimer(signal.ITIMER_REAL, 0)
            except KeyboardInterrupt:
                signal.setitimer(signal.ITIMER_REAL, 0)
                interrupted += 1
                # Whatever was cut short is answered (or the worker is gone) soon.
                wait_until(lambda: in_flight(worker) == 0, 10, "nothing is left in flight")
                if worker.pid != pid:
                    kills += 1
                    pid = warm(worker)
                continue
            assert result == [x * x for x in numbers]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupted > 0
    print(f"\n[interrupts] {i} calls, {interrupted} interrupted, {kills} worker(s) replaced")
    assert worker.calculate_squares([1, 2, 3], timeout=20) == [1, 4, 9]


# -- coalescing -------------------------------------------------------------------------------------


def test_small_requests_queued_behind_a_busy_writer_leave_in_one_write(worker: my_module.Worker, monkeypatch) -> None:
    # While the writer thread is busy with a frame (held here), 12 small submits return at once,
    # queued (a caller writes a small frame itself only when nothing else is in flight); the
    # writer then takes every queued frame and writes them in one write.
    from my_module import _connection

    warm(worker)
    writes, busy, release = [], threading.Event(), threading.Event()
    real_write_all = _connection.write_all

    def write_all(fd, data, stalled):
        writes.append(data)
        if len(writes) == 1:
            busy.set()
            release.wait(10)
        real_write_all(fd, data, stalled)

    monkeypatch.setattr(_connection, "write_all", write_all)
    first = worker.submit(range(2_000))  # over PIPE_BUF: written by the writer thread, never by its caller
    assert busy.wait(10)
    futures = [worker.submit([i, i + 1]) for i in range(12)]  # each returns at once: queued
    assert len(writes) == 1 and not any(f.done() for f in futures)
    release.set()
    assert first.result(timeout=10) == [n * n for n in range(2_000)]
    assert [f.result(timeout=10) for f in futures] == [[i * i, (i + 1) ** 2] for i in range(12)]
    assert len(writes) == 2 and writes[1].count(b'"calculate_squares"') == 12, writes
    assert in_flight(worker) == 0


def test_small_requests_meeting_a_full_pipe_go_out_once_it_has_room(test_methods_worker: my_module.Worker,
                                                                     monkeypatch) -> None:
    # The pipe "full" once (EAGAIN): the writer waits for room and writes the frame whole;
    # nothing is lost or cut, and the slow request beside it is answered too.
    from my_module import _framing

    w = test_methods_worker
    warm(w)
    slow = submit_request(w, "test/sleep", {"ms": 300})
    real_write, refusals = _framing.os.write, []

    def full_once(fd: int, data) -> int:
        if not refusals:
            refusals.append(bytes(data))
            raise BlockingIOError(11, "pipe full")
        return real_write(fd, data)

    monkeypatch.setattr(_framing.os, "write", full_once)
    future = w.submit([7, 8, 9])
    assert future.result(timeout=10) == [49, 64, 81]
    assert refusals and b'"calculate_squares"' in refusals[0]
    assert slow.exception(timeout=10) is None
    assert in_flight(w) == 0
