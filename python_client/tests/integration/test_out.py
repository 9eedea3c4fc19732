"""``out=``: the squares written into the caller's buffer (numpy uint64, ``array('Q')``, a memoryview cast to 'Q'),
which is returned; exact at every chunk and encoding boundary; refused before anything is sent when it cannot hold
them; and the module usable after an interrupt or a crash mid-call."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from array import array

import pytest

import my_module
from my_module import _methods

from conftest import in_flight, wait_until
from resources import Snapshot, assert_no_leaks

np = pytest.importorskip("numpy", reason="numpy is a test tool here (make venv-dask installs it)")
TOP = 2**32 - 1
SHM_CHUNK = _methods.SHM.chunk
SIZES = [0, 1, 8191, 8192, 8193, SHM_CHUNK - 1, SHM_CHUNK + 1]


def top_numbers(n: int) -> "np.ndarray":
    return np.arange(TOP + 1 - n, TOP + 1, dtype=np.uint64).astype(np.uint32)


def expected(x) -> "np.ndarray":
    return np.asarray(x, dtype=np.uint64) ** 2


OUTPUTS = {
    "numpy": lambda n: np.empty(n, np.uint64),
    "array": lambda n: array("Q", bytes(8 * n)),
    "memoryview": lambda n: memoryview(bytearray(8 * n)).cast("Q"),
}
INPUTS = {
    "numpy": lambda x: x,
    "list": lambda x: x.tolist(),
    "array": lambda x: array("I", x.tobytes()),
    "range": lambda x: range(int(x[0]), int(x[0]) + len(x)) if len(x) else range(0),
}


@pytest.mark.parametrize("size", SIZES)
def test_exact_into_numpy_at_every_boundary_in_every_encoding(any_encoding_worker, size) -> None:
    x = top_numbers(size)
    out = np.full(size, 7, np.uint64)
    assert any_encoding_worker.calculate_squares(x, out=out) is out
    assert np.array_equal(out, expected(x))


@pytest.mark.parametrize("kind", sorted(OUTPUTS))
@pytest.mark.parametrize("source", sorted(INPUTS))
def test_every_output_kind_from_every_input_kind(any_encoding_worker, kind, source) -> None:
    x = top_numbers(20_000)
    out = OUTPUTS[kind](len(x))
    result = any_encoding_worker.calculate_squares(INPUTS[source](x), out=out)
    assert result is out
    assert np.array_equal(np.frombuffer(memoryview(out).cast("B"), np.uint64), expected(x))


def test_the_module_function_submit_and_async(worker) -> None:
    x = top_numbers(50_000)
    out = np.empty(len(x), np.uint64)
    assert my_module.calculate_squares(x, out=out) is out and np.array_equal(out, expected(x))
    out2 = np.empty(len(x), np.uint64)
    assert worker.submit(x, out=out2).result(timeout=30) is out2 and np.array_equal(out2, expected(x))
    out3 = array("Q", bytes(8 * len(x)))
    assert asyncio.run(worker.calculate_squares_async(x, out=out3)) is out3
    assert np.array_equal(np.frombuffer(out3, np.uint64), expected(x))
    assert worker.calculate_squares([2, 3]) == [4, 9]  # without out=: a list, as ever


@pytest.mark.parametrize("out, error, words", [
    (np.empty(3, np.int64), TypeError, "unsigned 64-bit"),
    (np.empty(3, np.uint32), TypeError, "unsigned 64-bit"),
    (np.empty(3, np.float64), TypeError, "unsigned 64-bit"),
    (array("q", [0, 0, 0]), TypeError, "unsigned 64-bit"),
    (bytes(24), TypeError, "numpy.empty(3, numpy.uint64)"),
    ([0, 0, 0], TypeError, "not 'list'"),
    (np.empty(4, np.uint64), ValueError, "3 squares of numbers, not 4"),
    (np.empty(2, np.uint64), ValueError, "3 squares of numbers, not 2"),
    (np.empty((3, 2), np.uint64)[:, 0], ValueError, "not contiguous"),
])
def test_an_out_that_cannot_hold_the_squares_is_refused_before_anything_is_sent(worker, out, error, words) -> None:
    worker.info
    with pytest.raises(error) as caught:
        worker.calculate_squares([1, 2, 3], out=out)
    assert words in str(caught.value)
    assert "numpy.empty(3, numpy.uint64)" in str(caught.value) or error is ValueError
    assert in_flight(worker) == 0 and worker.calculate_squares([4], out=np.empty(1, np.uint64))[0] == 16


def test_a_read_only_out_is_refused(worker) -> None:
    out = np.empty(3, np.uint64)
    out.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        worker.calculate_squares([1, 2, 3], out=out)
    with pytest.raises(TypeError, match="read-only"):
        worker.submit([1, 2, 3], out=memoryview(bytes(24)).cast("Q"))


def test_bad_elements_raise_as_without_out(any_encoding_worker) -> None:
    with pytest.raises(OverflowError, match="element 2"):
        any_encoding_worker.calculate_squares([1, 2, -3], out=np.empty(3, np.uint64))
    with pytest.raises(TypeError, match="element 1"):
        any_encoding_worker.calculate_squares([1, "2", 3], out=np.empty(3, np.uint64))
    big = list(range(20_000)) + [2**32]
    with pytest.raises(OverflowError, match="element 20000"):
        any_encoding_worker.calculate_squares(big, out=np.empty(len(big), np.uint64))


def test_an_interrupt_mid_call_leaves_the_module_usable(worker_command) -> None:
    # Ctrl-C (SIGALRM raising KeyboardInterrupt) at moments of a 10,000,000-number call with out=.
    x = top_numbers(10_000_000)
    out = np.empty(len(x), np.uint64)
    before = Snapshot.settled()

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    landed = 0
    try:
        with my_module.Worker(worker_command) as w:
            pid = w.info and w.pid
            for after in (0.001, 0.005, 0.02, 0.05):
                try:
                    signal.setitimer(signal.ITIMER_REAL, after)
                    w.calculate_squares(x, out=out, timeout=60)
                except KeyboardInterrupt:
                    landed += 1
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                small = np.empty(3, np.uint64)
                assert list(w.calculate_squares([1, 2, TOP], out=small)) == [1, 4, TOP**2]
            assert w.calculate_squares(x, out=out, timeout=60) is out and np.array_equal(out, expected(x))
            wait_until(lambda: in_flight(w) == 0, 20, "every withdrawn chunk is answered")
            assert w.pid == pid
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert landed >= 1
    assert_no_leaks(before)


def test_a_worker_killed_mid_call_is_retried_and_the_out_is_exact(worker_command) -> None:
    x = top_numbers(6_000_000)
    out = np.zeros(len(x), np.uint64)
    with my_module.Worker(worker_command, encodings=("packed",)) as w:
        first = w.info and w.pid
        killer = threading.Timer(0.02, lambda: os.kill(first, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        assert w.calculate_squares(x, out=out, timeout=120) is out
        killer.join()
        assert np.array_equal(out, expected(x)) and w.pid != first
        print(f"\n[out=] 6,000,000 packed numbers with a SIGKILL: {time.monotonic() - started:.2f} s")
