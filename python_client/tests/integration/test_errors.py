"""The exception table: what a PyO3 ``Vec<u32>`` argument raises, with the index named."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import pytest

import my_module
from my_module._protocol import MAX_NUMBER

# (argument, expected exception, index named in the message or None)
TABLE = [
    ("123", TypeError, None),
    (b"\x01\x02", TypeError, None),
    (bytearray(b"\x01"), TypeError, None),
    (None, TypeError, None),
    (5, TypeError, None),
    (3.5, TypeError, None),
    ({1: 2}, TypeError, None),
    ([1, "2"], TypeError, 1),
    ([1, 2, 3.0], TypeError, 2),
    ([None], TypeError, 0),
    ([[1]], TypeError, 0),
    ([{}], TypeError, 0),
    ([1, float("nan")], TypeError, 1),
    ([1, float("inf")], TypeError, 1),
    ([Decimal(4)], TypeError, 0),
    ([Fraction(4, 1)], TypeError, 0),
    ([0, 1, -1], OverflowError, 2),
    ([-(10**30)], OverflowError, 0),
    ([MAX_NUMBER + 1], OverflowError, 0),
    ([5, 2**64], OverflowError, 1),
    ([10**5000], OverflowError, 0),  # too long for json.dumps: found by the slow scan
    # The first bad element wins, whatever its kind, as in PyO3's element-by-element loop.
    ([1, -1, "x"], OverflowError, 1),
    ([1, "x", -1], TypeError, 1),
    ([True, "x", -1], TypeError, 1),  # bools present: the slow path keeps the same order
    ([True, -1, "x"], OverflowError, 1),
]


def _id(value) -> str:
    try:
        return repr(value)[:30]
    except ValueError:  # an int too long to print
        return "huge-int"


@pytest.mark.parametrize(("argument", "expected", "index"), TABLE, ids=_id)
def test_exception_table(any_encoding_worker: my_module.Worker, argument, expected, index) -> None:
    with pytest.raises(expected) as info:
        any_encoding_worker.calculate_squares(argument)
    assert type(info.value) is expected
    message = str(info.value)
    assert message.startswith("argument 'numbers'"), message
    if index is not None:
        assert re.search(rf"\belement {index}\b", message), message


@pytest.mark.parametrize("bad", [Decimal("4.5"), Fraction(9, 2), 3.0, "3", -1, MAX_NUMBER + 1], ids=repr)
def test_bad_elements_of_a_big_call_are_refused_as_in_a_small_one(any_encoding_worker: my_module.Worker, bad) -> None:
    # 10,000 numbers go through shm where the worker offers it: the element is refused all the same
    # (before 3.10, array('I') truncated a Decimal there: 4.5 was squared as 4).
    numbers = list(range(10_000))
    numbers[9_000] = bad
    with pytest.raises((TypeError, OverflowError), match=r"element 9000\b") as info:
        any_encoding_worker.calculate_squares(numbers)
    assert type(info.value) is (OverflowError if isinstance(bad, int) else TypeError)


def test_valid_edges_are_accepted(worker: my_module.Worker) -> None:
    assert worker.calculate_squares([0, MAX_NUMBER]) == [0, MAX_NUMBER**2]


@pytest.mark.parametrize("bad_chunk", [0, 2, 4])
def test_first_bad_element_wins_across_chunks(worker_command, encoding_options, bad_chunk) -> None:
    w = my_module.Worker(worker_command, chunk_size=10, **encoding_options)
    numbers = list(range(50))
    numbers[bad_chunk * 10 + 3] = -1  # a negative in chunk bad_chunk ...
    numbers[47] = "late"  # ... and a later non-integer in the last chunk
    numbers[bad_chunk * 10 + 8] = 2**40
    with pytest.raises(OverflowError, match=rf"element {bad_chunk * 10 + 3} \(-1\)"):
        w.calculate_squares(numbers)
    # The worker is still fine afterwards.
    assert w.calculate_squares([7]) == [49]


def test_locally_found_error_does_not_hide_an_earlier_chunk_error(worker_command, encoding_options) -> None:
    w = my_module.Worker(worker_command, chunk_size=10, **encoding_options)
    numbers = list(range(30))
    numbers[5] = MAX_NUMBER + 1  # found by the worker (plain JSON)
    numbers[25] = True  # makes chunk 2 take the local path...
    numbers[26] = "x"  # ...which finds this one locally
    with pytest.raises(OverflowError, match=r"element 5\b"):
        w.calculate_squares(numbers)


def test_exceptions_hierarchy() -> None:
    assert issubclass(my_module.WorkerError, RuntimeError)
    for cls in (my_module.WorkerNotFoundError, my_module.WorkerCrashedError, my_module.ProtocolError):
        assert issubclass(cls, my_module.WorkerError)


def test_worker_crashed_error_pickles_with_details() -> None:
    import pickle
    import sys

    exc = my_module.WorkerCrashedError("boom", returncode=-9, stderr_tail=["a", "b"], pid=42)
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.returncode, copy.stderr_tail, copy.pid, str(copy)) == (-9, ("a", "b"), 42, "boom")


def test_a_worker_refuses_to_be_pickled_with_a_message_that_says_what_to_send() -> None:
    import pickle
    import sys

    worker = my_module.Worker(command=[sys.executable, "-c", "pass"])
    try:
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(worker)
    finally:
        worker.close()
