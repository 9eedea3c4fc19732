"""calculate_squares returns the exact squares, in order, for every accepted kind of input."""

from __future__ import annotations

import array
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import my_module
from my_module import _methods
from my_module._protocol import MAX_NUMBER

SRC = Path(__file__).resolve().parents[2] / "src"


def test_seed_example_squares_one_to_ten(any_encoding_worker: my_module.Worker) -> None:
    assert any_encoding_worker.calculate_squares([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == [
        1, 4, 9, 16, 25, 36, 49, 64, 81, 100,
    ]


def test_module_level_function_uses_a_shared_default_worker(worker_command) -> None:
    # Same lookup as the fixture, so whichever worker the environment provides is used.
    assert my_module.calculate_squares(range(1, 11)) == [n * n for n in range(1, 11)]
    first = my_module.default_worker()
    assert my_module.calculate_squares([3]) == [9]
    assert my_module.default_worker() is first
    assert first.pid is not None


def test_squares_past_two_to_the_53_stay_exact(any_encoding_worker: my_module.Worker) -> None:
    big = [MAX_NUMBER, MAX_NUMBER - 1, 2**26 + 1, 94906267]
    result = any_encoding_worker.calculate_squares(big)
    assert result == [n * n for n in big]
    assert result[0] == 18446744065119617025
    assert all(type(r) is int for r in result)


def test_empty_input_gives_empty_list(any_encoding_worker: my_module.Worker) -> None:
    assert any_encoding_worker.calculate_squares([]) == []
    assert any_encoding_worker.calculate_squares(iter(())) == []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda xs: list(xs), id="list"),
        pytest.param(lambda xs: tuple(xs), id="tuple"),
        pytest.param(lambda xs: (x for x in xs), id="generator"),
        pytest.param(lambda xs: array.array("I", xs), id="array-I"),
        pytest.param(lambda xs: array.array("q", xs), id="array-q"),
        pytest.param(lambda xs: memoryview(array.array("L", xs)), id="memoryview"),
        pytest.param(lambda xs: iter(list(xs)), id="iterator"),
    ],
)
def test_accepts_any_iterable_of_ints(any_encoding_worker: my_module.Worker, make) -> None:
    xs = [0, 1, 2, 65535, 65536, MAX_NUMBER]
    assert any_encoding_worker.calculate_squares(make(xs)) == [x * x for x in xs]


def test_accepts_range(worker: my_module.Worker) -> None:
    assert worker.calculate_squares(range(5, 50, 7)) == [x * x for x in range(5, 50, 7)]


def test_bool_counts_as_int_like_pyo3(any_encoding_worker: my_module.Worker) -> None:
    # PyO3's u32 extraction uses PyLong_AsLong, and bool is an int subclass: True -> 1.
    assert any_encoding_worker.calculate_squares([True, False, 3, True]) == [1, 0, 9, 1]
    assert any_encoding_worker.calculate_squares((True,)) == [1]


def test_int_subclasses_and_index_objects_are_ints(any_encoding_worker: my_module.Worker) -> None:
    import enum

    class Color(enum.IntEnum):
        RED = 7

    class Indexable:
        def __index__(self) -> int:
            return 12

    assert any_encoding_worker.calculate_squares([Color.RED, Indexable(), 2]) == [49, 144, 4]


def test_numpy_integer_arrays(any_encoding_worker: my_module.Worker) -> None:
    np = pytest.importorskip("numpy", reason="numpy is optional; its arrays are tested when present")
    for dtype in ("uint32", "int64", "uint64", "uint8", "int32"):
        values = np.arange(0, 200, dtype=dtype)
        assert any_encoding_worker.calculate_squares(values) == [int(v) ** 2 for v in range(200)], dtype
    assert any_encoding_worker.calculate_squares(np.array([MAX_NUMBER], dtype="uint32")) == [MAX_NUMBER**2]
    # A list of numpy scalars is not plain JSON: the slow path converts them with __index__.
    assert any_encoding_worker.calculate_squares([np.uint32(5), np.int64(6)]) == [25, 36]


def test_numpy_is_not_imported_by_my_module() -> None:
    code = "import sys, my_module; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30, check=True)
    assert out.stdout.strip() == "False"


def test_big_input_is_chunked_and_reassembled_in_order(any_encoding_worker: my_module.Worker) -> None:
    n = _methods.PACKED.chunk * 5 + 123  # shm: one request of them (tests/test_shm_plane.py chunks)
    numbers = list(range(MAX_NUMBER - n, MAX_NUMBER))
    assert any_encoding_worker.calculate_squares(numbers) == [x * x for x in numbers]


def test_small_chunks_many_parts(worker_command, encoding_options) -> None:
    with my_module.Worker(worker_command, chunk_size=7, **encoding_options) as w:
        numbers = list(range(1000))
        assert w.calculate_squares(numbers) == [x * x for x in numbers]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=0, max_value=MAX_NUMBER), max_size=300))
def test_property_any_u32_list_squares_exactly(any_encoding_worker: my_module.Worker, xs) -> None:
    assert any_encoding_worker.calculate_squares(xs) == [x * x for x in xs]


def test_info_is_the_initialize_result(worker: my_module.Worker) -> None:
    info = worker.info
    assert info["protocolVersion"].split(".")[0] == "1"
    assert info["limits"]["maxNumber"] == MAX_NUMBER
    assert isinstance(info["parallelism"], int) and info["parallelism"] >= 1
    info["parallelism"] = -1  # a copy: the Worker's own is untouched
    assert worker.info["parallelism"] >= 1


def test_async_api(worker: my_module.Worker) -> None:
    async def main():
        results = await asyncio.gather(
            *(worker.calculate_squares_async(range(i)) for i in range(50))
        )
        return results

    results = asyncio.run(main())
    assert results == [[x * x for x in range(i)] for i in range(50)]


def test_big_async_calls_convert_in_pieces_exactly(any_encoding_worker: my_module.Worker) -> None:
    # The async path converts a chunk (shm) or a part (packed) at a time: several chunks, the
    # last one short, an array('I') too; the result is the same list a blocking call gives.
    numbers = [(x * 2654435761) % (MAX_NUMBER + 1) for x in range(3 * 32768 + 5)]
    expected = [x * x for x in numbers]
    for given in (numbers, array.array("I", numbers)):
        assert asyncio.run(any_encoding_worker.calculate_squares_async(given)) == expected


def test_module_level_async_function() -> None:
    assert asyncio.run(my_module.calculate_squares_async([2, 3])) == [4, 9]


def test_submit_returns_a_future(worker: my_module.Worker) -> None:
    futures = [worker.submit(range(i)) for i in range(20)]
    assert [f.result(timeout=30) for f in futures] == [[x * x for x in range(i)] for i in range(20)]


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "my_module", *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=60)


def test_cli_prints_squares() -> None:
    out = _run_cli("1", "2", "3", "4294967295")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "4", "9", "18446744065119617025"]


def test_cli_info_prints_initialize_result() -> None:
    out = _run_cli("--info")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["protocolVersion"].startswith("1.")


def test_cli_reports_bad_numbers() -> None:
    out = _run_cli("1", "-5")
    assert out.returncode == 1
    assert "'-5' is not a u32" in out.stderr and out.stderr.count("\n") == 1  # named, one line


# -- buffers: u32s go to the wire from their bytes ---------------------------------------------


def test_u32_buffers_are_taken_as_they_are_without_a_copy() -> None:
    from my_module import _convert

    numbers = array.array("I", [1, 2, MAX_NUMBER])
    view = _convert.as_numbers(numbers)
    assert isinstance(view, memoryview) and view.obj is numbers  # no tolist(), no copy
    np = pytest.importorskip("numpy", reason="numpy arrays are checked when numpy is installed")
    u32 = np.arange(5, dtype=np.uint32)
    assert _convert.as_numbers(u32).obj is u32
    # Other integer dtypes are converted in C (a u32 copy), never through a Python list.
    assert isinstance(_convert.as_numbers(np.arange(5, dtype=np.int64)).obj, array.array)


def test_u32_buffers_square_exactly(any_encoding_worker: my_module.Worker) -> None:
    numbers = array.array("I", range(MAX_NUMBER - 70_000, MAX_NUMBER + 1))
    assert any_encoding_worker.calculate_squares(numbers) == [n * n for n in numbers]
    np = pytest.importorskip("numpy", reason="numpy arrays are checked when numpy is installed")
    strided = np.arange(0, 40_000, dtype=np.uint32)[::3]  # not C-contiguous: converted
    assert any_encoding_worker.calculate_squares(strided) == [int(n) ** 2 for n in strided]
    big_endian = np.arange(100, dtype=">u4")  # not native: the tolist() path
    assert any_encoding_worker.calculate_squares(big_endian) == [n * n for n in range(100)]


def test_bad_values_in_integer_buffers_name_the_element(worker: my_module.Worker) -> None:
    with pytest.raises(OverflowError, match=r"element 2 \(-1\)"):
        worker.calculate_squares(array.array("q", [1, 2, -1, 2**40]))
    with pytest.raises(OverflowError, match=r"element 1 .*larger than"):
        worker.calculate_squares(array.array("Q", [1, 2**32]))
    with pytest.raises(TypeError, match="element 0"):
        worker.calculate_squares(array.array("d", [1.0]))


def test_numpy_bool_arrays_are_refused_as_pyo3_does(worker: my_module.Worker) -> None:
    np = pytest.importorskip("numpy", reason="numpy arrays are checked when numpy is installed")
    with pytest.raises(TypeError, match="bool"):
        worker.calculate_squares(np.array([True, False]))
    assert worker.calculate_squares(np.array([], dtype=bool)) == []
    assert worker.calculate_squares([True, False]) == [1, 0]  # Python bools stay ints, as in PyO3
