"""Shared fixtures: the worker under test, fake workers, and a hard time bound per test.

Tests sit in folders by kind: ``unit/`` (no worker process), ``integration/`` (the real worker,
every way a user calls it), ``faults/`` (crashes, kills, stalls, interrupts), ``long/`` (minutes
long; ``make test-long``), and ``support/`` (helpers they import, not tests).

The real-worker tests run against whatever the normal lookup finds (``$MY_MODULE_WORKER``,
then ``squares-worker`` on PATH, then this repository's ``.build`` output), so the same suite
checks the Swift worker or the Python reference worker
(``MY_MODULE_WORKER="python3 protocol/tests/reference_worker.py"``).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import my_module
from my_module import _requests
from my_module._locate import find_worker
from my_module._methods import RpcMethod

TESTS = Path(__file__).resolve().parent
SUPPORT = TESTS / "support"  # what tests use: fake workers, load drivers, /proc counters (imported by name)
sys.path.insert(0, str(SUPPORT))
FAKE_WORKER = SUPPORT / "fake_worker.py"

HARD_TIMEOUT = 60.0
"""No single test may take longer: past it, every thread's traceback is dumped and the run
exits (a hang is a failure, never a stuck CI)."""


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "long: too slow or memory-hungry for the default run; skipped (saying why) unless "
        "MY_MODULE_LONG=1, as `make test-long` sets",
    )


@pytest.fixture(autouse=True)
def hard_time_bound() -> Iterator[None]:
    faulthandler.dump_traceback_later(HARD_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def worker_command() -> Tuple[str, ...]:
    """The argv of the worker the normal lookup finds (a missing worker fails the suite)."""
    return find_worker()


@pytest.fixture
def worker(worker_command: Tuple[str, ...]) -> Iterator[my_module.Worker]:
    with my_module.Worker(worker_command) as w:
        yield w


@pytest.fixture
def test_methods_worker(worker_command: Tuple[str, ...]) -> Iterator[my_module.Worker]:
    """A worker serving ``test/sleep`` (``--test-methods``), for deterministic slow requests."""
    with my_module.Worker((*worker_command, "--test-methods")) as w:
        yield w


@pytest.fixture(scope="session")
def worker_info(worker_command: Tuple[str, ...]) -> Dict[str, Any]:
    with my_module.Worker(worker_command) as w:
        return w.info


@pytest.fixture(params=["shm", "packed", "json"])
def encoding_options(request, worker_info: Dict[str, Any]) -> Dict[str, Any]:
    """``Worker(...)`` options for talking shm (1.2; packed below its size), packed (1.1), JSON."""
    if request.param != "json" and request.param not in worker_info.get("encodings", []):
        pytest.skip(f"this worker does not announce the {request.param} encoding")
    return {"encodings": ("shm", "packed", "json")[("shm", "packed", "json").index(request.param):]}


@pytest.fixture
def any_encoding_worker(worker_command: Tuple[str, ...], encoding_options) -> Iterator[my_module.Worker]:
    """The worker, talking each encoding in turn (see encoding_options)."""
    with my_module.Worker(worker_command, **encoding_options) as w:
        yield w


SLEEP = RpcMethod("test/sleep")
"""A method of a worker started with ``--test-methods``: an entry of the method table, made
here (the package's table holds only the protocol's methods)."""


def submit_request(w: my_module.Worker, method: str, params: Any = None, *, timeout: Optional[float] = None):
    """Send one request of any method (no retry) and return its Future."""
    return _requests.submit(w._session.call(RpcMethod(method), params, timeout, retries=0), w._session.deadlines)


def request(w: my_module.Worker, method: str, params: Any = None, *, timeout: Optional[float] = None) -> Any:
    """Send one request of any method (no retry) and return its result, blocking."""
    return _requests.run(w._session.call(RpcMethod(method), params, timeout, retries=0))


def in_flight(w: my_module.Worker) -> int:
    """Requests sent to ``w``'s current worker process and not answered yet."""
    conn = w._session._conn
    if conn is None:
        return 0
    with conn._lock:
        return len(conn._pending)


FakeCommand = Callable[..., List[str]]


@pytest.fixture
def fake(tmp_path: Path) -> FakeCommand:
    """``fake("stall", once=True, ignore_shutdown=True)`` -> argv of a fake worker."""

    def command(mode: str, *, once: bool = False, ignore_shutdown: bool = False) -> List[str]:
        argv = [sys.executable, str(FAKE_WORKER), mode]
        if once:
            argv += ["--once", str(tmp_path / f"{mode}.once")]
        if ignore_shutdown:
            argv.append("--ignore-shutdown")
        return argv

    return command


def assert_reaped(pid: int) -> None:
    """Fail unless ``pid`` is no longer our child: exited *and* waited for (no zombie)."""
    try:
        reaped_pid, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    pytest.fail(f"worker pid {pid} is still our child (waitpid -> {reaped_pid}): not reaped")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.005)
