"""The demo of README: square a million numbers in the Swift worker, beside pure Python."""

import random
import time

import my_module


def best_of(runs, function, *args):
    """The fastest of `runs` timed calls, in seconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    numbers = [random.getrandbits(32) for _ in range(1_000_000)]
    print("my_module.calculate_squares([1..10]) =", my_module.calculate_squares(range(1, 11)))

    worker_time, squares = best_of(5, my_module.calculate_squares, numbers)
    python_time, expected = best_of(5, lambda xs: [x * x for x in xs], numbers)
    assert squares == expected, "the worker's squares differ from Python's"

    info = my_module.default_worker().info
    print(f"worker: {info['serverInfo']['name']} {info['serverInfo']['version']}, "
          f"protocol {info['protocolVersion']}, parallelism {info['parallelism']} "
          f"(the core count it splits big requests across)")
    print(f"1,000,000 random u32, exact squares; a sample: "
          f"{numbers[0]}² = {squares[0]}, {numbers[-1]}² = {squares[-1]}")
    print(f"  my_module.calculate_squares: {worker_time * 1e3:8.1f} ms")
    print(f"  pure Python [x * x ...]:     {python_time * 1e3:8.1f} ms "
          f"(worker / Python = {worker_time / python_time:.2f})")
    print(f"  4294967295² = {my_module.calculate_squares([4294967295])[0]} (exact, past 2**53)")


if __name__ == "__main__":
    main()
