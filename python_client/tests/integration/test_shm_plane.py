"""The shm plane wired in: used for big chunks when the worker lists shm, segments back in the
pool after each reply, and a transparent packed fallback (exact results) when it cannot be used."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

import my_module
from my_module import _shm

REFERENCE = Path(__file__).resolve().parents[3] / "protocol" / "tests" / "reference_worker.py"
pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="no memfd_create here")


def numbers(n: int) -> list:
    rng = random.Random(n)
    return [rng.randrange(2**32) for _ in range(n)]


def pool_of(w: my_module.Worker) -> _shm.Pool:
    return w._session._conn.pool  # type: ignore[union-attr]


def skip_without_shm(w: my_module.Worker) -> None:
    if "shm" not in w.info["encodings"]:
        pytest.skip("the worker does not serve shm (protocol 1.1)")


def test_big_calls_go_through_segments_and_return_to_the_pool(worker_command) -> None:
    with my_module.Worker(worker_command) as w:
        skip_without_shm(w)
        for n in (8192, 50_000, 3_000_000):
            xs = numbers(n)
            assert w.calculate_squares(xs) == [x * x for x in xs]
        pool = pool_of(w)
        assert pool._made >= 1 and not pool.closed
        assert len(pool._idle) <= pool.max_idle  # each segment came back after its reply


def test_a_worker_without_shm_gets_packed(tmp_path) -> None:
    with my_module.Worker([sys.executable, str(REFERENCE), "--fault", "no-shm"]) as w:
        xs = numbers(20_000)
        assert w.calculate_squares(xs) == [x * x for x in xs]
        assert pool_of(w)._made == 0  # never offered a segment to a worker not listing shm


def test_a_failing_memfd_falls_back_to_packed_and_stops_shm(worker_command, monkeypatch) -> None:
    def refuse(*args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    with my_module.Worker(worker_command) as w:
        skip_without_shm(w)
        for _ in range(2):
            xs = numbers(20_000)
            assert w.calculate_squares(xs) == [x * x for x in xs]
        assert pool_of(w).closed  # the connection stopped trying shm


@pytest.mark.parametrize("bad, error, index", [("x", TypeError, 19_999), (-1, OverflowError, 12_345), (2**32, OverflowError, 0)])
def test_a_bad_element_in_an_shm_sized_chunk_is_named_and_its_segment_returns(worker_command, bad, error, index) -> None:
    with my_module.Worker(worker_command) as w:
        skip_without_shm(w)
        xs = numbers(20_000)
        assert w.calculate_squares(xs) == [x * x for x in xs]
        idle = len(pool_of(w)._idle)
        xs[index] = bad
        with pytest.raises(error, match=f"element {index} "):
            w.calculate_squares(xs)
        assert len(pool_of(w)._idle) == idle  # the segment it took came back
        xs[index] = 7
        assert w.calculate_squares(xs) == [x * x for x in xs]
