"""Ctrl-C at any moment leaves the module usable: SIGALRM raising ``KeyboardInterrupt`` (what
Python's own SIGINT handler does) lands at many moments of a big call and of start-ups; then
calls must be exact and answered within their timeout, and nothing may be left behind.

A frame on the pipe is whole or the worker is replaced: the interrupted call is cancelled,
and a worker that got part of a frame is killed (the next call starts a fresh one).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import my_module

from conftest import SUPPORT, TESTS, in_flight, wait_until
from resources import Snapshot, assert_no_leaks

SRC = Path(__file__).resolve().parents[2] / "src"

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer (POSIX)"),
    pytest.mark.skipif(
        sys.version_info < (3, 10),
        reason="before 3.10 a signal can land between a with block and its __exit__ (bpo-29988), "
        "leaving any lock held: no Python code is interrupt-safe there",
    ),
]


class Interrupts:
    """``with Interrupts(after):`` raises KeyboardInterrupt in the main thread ``after`` s in."""

    def __init__(self, after: float) -> None:
        self.after = after

    def __enter__(self) -> "Interrupts":
        def interrupt(signum, frame):
            raise KeyboardInterrupt

        self.previous = signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, self.after)
        return self

    def __exit__(self, *exc) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def check_usable(w: my_module.Worker) -> None:
    assert w.calculate_squares([3], timeout=20) == [9]
    numbers = list(range(2**32 - 100_000, 2**32))
    assert w.calculate_squares(numbers, timeout=30) == [n * n for n in numbers]


def test_interrupts_at_many_moments_of_a_20_million_number_call() -> None:
    # In a process of its own: 20,000,000 ints and their squares would leave this one's RSS
    # high (freed small objects are not all given back), which later memory bounds would see.
    out = subprocess.run([sys.executable, __file__, "big-call"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (SRC, TESTS, SUPPORT)))})
    assert out.returncode == 0, out.stderr[-3000:]
    # A worker killed because the caller's own interrupt cut a frame is no crash: no warning
    # (logging's last-resort handler would print one to stderr).
    assert "ended with" not in out.stderr and "WARNING" not in out.stderr, out.stderr[-3000:]
    print(out.stdout)


def big_call_interrupts() -> None:
    # Moments from the first chunks' encoding to the last replies' assembly: 0.01 s to 2 s
    # into a call that takes several seconds (more under load), log-spread.
    numbers = list(range(20_000_000))
    rng = random.Random(9)
    before = Snapshot.settled()
    landed = finished = 0
    with my_module.Worker() as w:
        w.info
        for k in range(8):
            after = 0.01 * 200 ** (k / 7) * rng.uniform(0.8, 1.2)
            try:
                with Interrupts(after):
                    result = w.calculate_squares(numbers, timeout=60)
            except KeyboardInterrupt:
                landed += 1
            else:
                finished += 1
                assert len(result) == len(numbers) and result[-1] == (len(numbers) - 1) ** 2
                del result
            check_usable(w)
            wait_until(lambda: in_flight(w) == 0, 20, "every cancelled chunk is answered")
    print(f"[interrupts] 20,000,000-number call: {landed} interrupted, {finished} finished first")
    assert landed >= 4
    assert_no_leaks(before)


def test_interrupted_start_ups_leak_nothing(worker_command) -> None:
    # 40 start-ups, each interrupted 0.1 ms to the length of a whole first call in (spawn,
    # thread starts, initialize, the handshake wait, the call), then close(): no thread, child
    # (zombie or not) or fd may be left.
    started = time.monotonic()
    with my_module.Worker(worker_command) as w:
        w.calculate_squares([2], timeout=20)
    span = max(0.001, time.monotonic() - started)
    before = Snapshot.settled()
    rng = random.Random(3)
    landed = 0
    for _ in range(40):
        w = my_module.Worker(worker_command)
        try:
            with Interrupts(rng.uniform(0.0001, span)):
                w.calculate_squares([2], timeout=20)
        except KeyboardInterrupt:
            landed += 1
        w.close()
    print(f"\n[interrupts] start-ups: {landed} of 40 interrupted")
    assert landed >= 10
    assert_no_leaks(before)


def test_an_interrupted_start_up_is_finished_by_the_next_call(worker_command) -> None:
    with my_module.Worker(worker_command) as w:
        for delay in (0.0001, 0.001, 0.005):
            try:
                with Interrupts(delay):
                    w.info
            except KeyboardInterrupt:
                pass
            check_usable(w)


if __name__ == "__main__" and sys.argv[1:] == ["big-call"]:
    big_call_interrupts()


def test_a_delivery_that_fails_after_its_result_was_recorded_still_settles_the_call(monkeypatch) -> None:
    # The reader thread delivers replies; a bug between recording a chunk's result and settling its call makes the
    # connection hand the request back (on_lost): the call, whose result is in, must settle with it, not hang.
    from my_module import _methods, _requests, _session

    class Connection:  # what a Call uses of a connection, writing nowhere
        peer_max_frame_bytes, peer_encodings, pool = 1 << 20, ("json",), None

        def __init__(self) -> None:
            self.sent, self.ids = [], iter(range(1, 100))

        def new_id(self) -> int:
            return next(self.ids)

        def send(self, request, body, weight=0, **_) -> None:
            self.sent.append(request)

        def withdraw(self, request) -> bool:
            return False

    class Session:
        options = _session.Options(encodings=("json",))
        conn = Connection()

        def connection(self, deadline):
            return self.conn

    call = _requests.Call(Session(), _methods.CALCULATE_SQUARES, [1, 2, 3], None, 1)
    call.pump()
    (request,) = Session.conn.sent
    monkeypatch.setattr(_requests.Call, "settle", Failing(_requests.Call.settle))
    with pytest.raises(RuntimeError):
        call.on_reply(request, False, [1, 4, 9])
    assert not call.settled
    assert call.on_lost(request, my_module.WorkerError("internal error while delivering a reply")) is False
    assert call.settled and call.result(timeout=0) == [1, 4, 9]


class Failing:
    """A method that raises RuntimeError (a bug) at its start the first time, then runs as ``original``."""

    def __init__(self, original) -> None:
        self.original, self.cut = original, False

    def __get__(self, instance, owner):
        return lambda *args: self(instance, *args)

    def __call__(self, *args):
        if not self.cut:
            self.cut = True
            raise RuntimeError("a bug")
        return self.original(*args)


def test_an_interrupt_right_after_a_big_frame_is_handed_over_keeps_the_worker(worker_command, monkeypatch,
                                                                             caplog) -> None:
    # A signal is often handled at the start of the next Python function: here right after a big frame is queued
    # for the writer. The call is withdrawn (written or not, its reply is dropped as cancelled) and the worker keeps
    # serving: nothing is killed, nothing logged.
    from my_module import _connection

    with my_module.Worker(worker_command) as w:
        assert w.calculate_squares([1, 2]) == [1, 4]
        pid, send = w.pid, _connection.Connection.send
        cut = []

        def send_then_interrupt(self, *args, **kwargs):
            send(self, *args, **kwargs)
            if not cut:
                cut.append(True)
                raise KeyboardInterrupt

        monkeypatch.setattr(_connection.Connection, "send", send_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            w.calculate_squares(list(range(2_000)))  # packed, over PIPE_BUF
        assert cut and w.calculate_squares(list(range(2_000))) == [n * n for n in range(2_000)]
        wait_until(lambda: in_flight(w) == 0, 10, "the withdrawn request is answered")
        assert w.pid == pid and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_interrupt_right_after_a_callers_own_write_drops_its_reply_quietly(worker_command, monkeypatch,
                                                                            caplog) -> None:
    # A lone small call is written by its caller (one whole write); an interrupt right after that write, before
    # the request is listed as pending, leaves its id among the unlisted ones: its reply is dropped, not taken for
    # a protocol error, and the worker keeps serving.
    from my_module import _connection

    with my_module.Worker(worker_command) as w:
        assert w.calculate_squares([1]) == [1]
        pid, write = w.pid, _connection.os.write

        def write_then_interrupt(fd, data):
            write(fd, data)
            monkeypatch.setattr(_connection.os, "write", write)
            raise KeyboardInterrupt

        monkeypatch.setattr(_connection.os, "write", write_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            w.calculate_squares([5, 6])
        assert w.calculate_squares([7]) == [49]
        wait_until(lambda: not w._session._conn._unlisted, 10, "the unlisted reply is dropped")
        assert w.pid == pid and not [r for r in caplog.records if r.levelno >= logging.WARNING]
