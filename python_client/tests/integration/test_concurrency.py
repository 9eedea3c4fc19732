"""Many threads, one worker: replies matched by id, every result correct."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import my_module
from my_module._protocol import MAX_NUMBER

from conftest import in_flight, submit_request, wait_until


def test_32_threads_x_200_calls_of_mixed_sizes(worker_command) -> None:
    # Small chunks so that the bigger calls are pipelined in several chunks while other
    # threads' calls interleave with them, without making the test slow.
    with my_module.Worker(worker_command, chunk_size=4096) as worker:
        _32_threads_x_200_calls(worker)


def _32_threads_x_200_calls(worker: my_module.Worker) -> None:
    errors = []
    pids = set()
    start = threading.Barrier(32)

    def run(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        try:
            for i in range(200):
                size = rng.choice((0, 1, 2, 5, 17, 100, 1000)) if i % 25 else 9_000
                base = rng.randrange(0, MAX_NUMBER - size)
                numbers = range(base, base + size)
                result = worker.calculate_squares(numbers)
                if result != [n * n for n in numbers]:
                    errors.append(f"thread {seed} call {i}: wrong result for {size} numbers")
                    return
            pids.add(worker.pid)
        except Exception as exc:  # reported below with the thread that saw it
            errors.append(f"thread {seed}: {exc!r}")

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=50)
    assert not any(t.is_alive() for t in threads), "some threads never finished"
    assert errors == []
    assert len(pids) == 1, f"all calls should share one worker process, saw {pids}"


def test_replies_out_of_order_are_matched_by_id(test_methods_worker: my_module.Worker) -> None:
    w = test_methods_worker
    slow = submit_request(w, "test/sleep", {"ms": 300})
    fast = w.submit([1, 2, 3])
    assert fast.result(timeout=10) == [1, 4, 9]
    assert not slow.done(), "the quick call must not wait for the slow one"
    assert slow.result(timeout=10) is None


def test_submit_from_many_threads_then_wait(worker: my_module.Worker) -> None:
    futures = []
    lock = threading.Lock()

    def submit_some(k: int) -> None:
        for i in range(50):
            f = worker.submit(range(k, k + i))
            with lock:
                futures.append((k, i, f))

    threads = [threading.Thread(target=submit_some, args=(k * 1000,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for k, i, f in futures:
        assert f.result(timeout=30) == [n * n for n in range(k, k + i)]


def test_async_calls_do_not_block_the_event_loop(test_methods_worker: my_module.Worker) -> None:
    w = test_methods_worker

    async def main() -> int:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        numbers = list(range(300_000))
        results = await asyncio.gather(*(w.calculate_squares_async(numbers) for _ in range(4)))
        assert all(r == [n * n for n in numbers] for r in results)
        stop.set()
        await task
        return ticks

    started = time.monotonic()
    ticks = asyncio.run(main())
    elapsed = time.monotonic() - started
    # The loop kept ticking while the calls were in flight (not stuck until they ended).
    assert ticks >= 3, f"event loop ticked only {ticks} times in {elapsed:.2f} s"


def test_cancelling_an_async_call_cancels_it_in_the_worker(test_methods_worker: my_module.Worker) -> None:
    w = test_methods_worker
    w.calculate_squares([1])  # started and initialized

    async def main() -> None:
        # A big call occupies the worker; cancel it and check the worker lets go.
        task = asyncio.ensure_future(w.calculate_squares_async(range(3_000_000)))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    wait_until(lambda: in_flight(w) == 0, 20, "the worker answered or cancelled every chunk")
    assert w.calculate_squares([5]) == [25]
