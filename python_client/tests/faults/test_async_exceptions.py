"""An exception in one calling thread affects that call alone. Timeout libraries stop a function by raising an
exception in its thread (``PyThreadState_SetAsyncExc``), and Ctrl-C raises ``KeyboardInterrupt`` in the main thread,
at any moment of a call: starting, converting, handing over, waiting, assembling. Every other call must still end
exact, on the same worker (never killed), with nothing logged at WARNING or above and nothing leaked."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import random
import signal
import sys
import threading
import time
from typing import Callable, Dict, List, Set

import pytest

import my_module

from conftest import in_flight, wait_until
from resources import Snapshot, assert_no_leaks

SIZES = (3, 100, 10_000, 100_000, 2_000_000)
TOP = 2**32 - 1


class Injected(Exception):
    """What the 'timeout library' raises inside a calling thread."""


def numbers_of(size: int, rng: random.Random) -> range:
    start = rng.choice((0, TOP + 1 - size))
    return range(start, start + size)


def exact(result, numbers: range) -> bool:
    return len(result) == len(numbers) and result[0] == numbers[0] ** 2 and result[-1] == numbers[-1] ** 2 \
        and result[len(result) // 2] == numbers[len(numbers) // 2] ** 2


class Calls:
    """Threads calling one Worker in the three ways; each outcome must be exact or the injected exception."""

    def __init__(self, w: my_module.Worker, seed: int) -> None:
        self.w, self.seed = w, seed
        self.errors: List[str] = []
        self.outcomes: Dict[str, int] = {"exact": 0, "injected": 0}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.cancel: Dict[int, Callable[[], object]] = {}  # thread -> how to cancel its async call

    def one(self, rng: random.Random, loop: asyncio.AbstractEventLoop, around: Callable[[], object]) -> None:
        numbers = numbers_of(rng.choice(SIZES), rng)
        way = rng.choice(("blocking", "submit", "async"))
        try:
            with around():  # type: ignore[attr-defined]
                if way == "blocking":
                    result = self.w.calculate_squares(numbers, timeout=120)
                elif way == "submit":
                    result = self.w.submit(numbers, timeout=120).result(timeout=120)
                else:  # asyncio's own way to stop a task: cancel it (an exception in the loop's code is asyncio's)
                    task = loop.create_task(self.w.calculate_squares_async(numbers, timeout=120))
                    self.cancel[threading.get_ident()] = lambda: loop.call_soon_threadsafe(task.cancel)
                    try:
                        result = loop.run_until_complete(task)
                    finally:
                        del self.cancel[threading.get_ident()]
            outcome = "exact" if exact(result, numbers) else f"wrong result for {way} of {len(numbers)}"
        except (Injected, KeyboardInterrupt, asyncio.CancelledError):
            outcome = "injected"
        except BaseException as exc:  # reported below: no other exception may reach a caller
            outcome = f"{way} of {len(numbers)} numbers raised {exc!r}"
        with self.lock:
            if outcome in self.outcomes:
                self.outcomes[outcome] += 1
            else:
                self.errors.append(outcome)

    def run(self, k: int, around: Callable[[], object]) -> None:
        rng, loop = random.Random(self.seed * 100 + k), asyncio.new_event_loop()
        try:
            while not self.stop.is_set():
                try:
                    while not self.stop.is_set():
                        self.one(rng, loop, around)
                except (Injected, KeyboardInterrupt):  # landed in this loop, outside a call
                    continue
        finally:
            loop.close()


class Gate:
    """Which threads are inside a call: exceptions are injected only there, and one still pending when a thread
    leaves is withdrawn (``PyThreadState_SetAsyncExc(tid, NULL)``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside: Set[int] = set()

    def around(self):
        gate = self

        class Inside:
            def __enter__(self) -> None:
                with gate.lock:
                    gate.inside.add(threading.get_ident())

            def __exit__(self, *exc) -> None:
                with gate.lock:
                    gate.inside.discard(threading.get_ident())
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)

        return Inside()

    def inject(self, rng: random.Random, cancel: Dict[int, Callable[[], object]]) -> bool:
        with self.lock:
            if not self.inside:
                return False
            tid = rng.choice(sorted(self.inside))
            if tid in cancel:
                cancel[tid]()
                return True
            return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(Injected)) == 1


def check_after(w: my_module.Worker, pid: int, calls: Calls, caplog, before: Snapshot) -> None:
    assert not calls.errors, calls.errors[:10]
    assert w.pid == pid, "the worker was replaced"
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("my_module")]
    assert not loud, loud
    wait_until(lambda: in_flight(w) == 0, 30, "every withdrawn request is answered")
    for size in (3, 100_000, 2_000_000):
        numbers = numbers_of(size, random.Random(size))
        assert exact(w.calculate_squares(numbers, timeout=60), numbers)
    assert w.pid == pid


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="PyThreadState_SetAsyncExc is CPython's")
@pytest.mark.parametrize("switch_interval", [None, 1e-5, 1e-6])
def test_exceptions_injected_into_8_calling_threads_fail_only_their_own_calls(worker_command, caplog,
                                                                              switch_interval) -> None:
    caplog.set_level(logging.WARNING, logger="my_module")
    previous = sys.getswitchinterval()
    rng = random.Random(7)
    before = Snapshot.settled()
    gate = Gate()
    with my_module.Worker(worker_command) as w:
        pid = w.info and w.pid
        calls = Calls(w, seed=int((switch_interval or 1) * 1e6))
        threads = [threading.Thread(target=calls.run, args=(k, gate.around), name=f"caller-{k}") for k in range(8)]
        injected = 0
        if switch_interval is not None:
            sys.setswitchinterval(switch_interval)
        try:
            for t in threads:
                t.start()
            until = time.monotonic() + 6
            while time.monotonic() < until:
                time.sleep(rng.uniform(0, 0.02))
                injected += gate.inject(rng, calls.cancel)
        finally:
            calls.stop.set()
            for t in threads:
                t.join(timeout=60)
            sys.setswitchinterval(previous)
        assert not any(t.is_alive() for t in threads)
        print(f"\n[async exceptions] switch interval {switch_interval}: {injected} injected, {calls.outcomes}")
        assert injected >= 50 and calls.outcomes["injected"] >= 10 and calls.outcomes["exact"] >= 10
        check_after(w, pid, calls, caplog, before)
    assert_no_leaks(before)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer (POSIX)")
def test_ctrl_c_in_the_main_thread_fails_only_its_own_call(worker_command, caplog) -> None:
    # SIGALRM raising KeyboardInterrupt (what Python's SIGINT handler does) at random moments of 60 calls made by
    # the main thread, while 4 other threads call the same Worker.
    import contextlib

    caplog.set_level(logging.WARNING, logger="my_module")
    rng = random.Random(11)
    before = Snapshot.settled()

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    with my_module.Worker(worker_command) as w:
        pid = w.info and w.pid
        calls = Calls(w, seed=3)
        threads = [threading.Thread(target=calls.run, args=(k, contextlib.nullcontext)) for k in range(4)]
        for t in threads:
            t.start()
        main = Calls(w, seed=4)
        loop = asyncio.new_event_loop()
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            for _ in range(60):
                try:
                    try:
                        signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.00005, 0.3))
                        main.one(rng, loop, contextlib.nullcontext)
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                except KeyboardInterrupt:  # landed just outside the call: it must not harm the others either
                    pass
        finally:
            signal.signal(signal.SIGALRM, previous)
            loop.close()
            calls.stop.set()
            for t in threads:
                t.join(timeout=60)
        print(f"\n[ctrl-c] main thread: {main.outcomes}; 4 other threads: {calls.outcomes}")
        assert main.outcomes["injected"] >= 10 and calls.outcomes["exact"] >= 10
        assert not main.errors, main.errors
        check_after(w, pid, calls, caplog, before)
    assert_no_leaks(before)
