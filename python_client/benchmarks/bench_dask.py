"""Scaling out: one fixed job on a dask.distributed LocalCluster, my_module against pure Python.

Usage (from the repository root; ``make bench-dask`` builds the worker, makes the benchmark's
own venv ``.venv-bench`` from ``requirements-dask.txt`` and runs this in it)::

    python python_client/benchmarks/bench_dask.py [--numbers N] [--partitions P] [--rounds R]
                                                  [--png FILE] [--json FILE] [--quick]

The job: the squares of N u32 numbers (default 20,000,000, the top of the u32 range so that
every square is past 2**53) in P partitions (default 40). Each task gets a ``range`` (a few
bytes pickled) and returns its squares as one ``array('Q')``, the task shape
docs/scaling-out.md recommends; the client gathers all of them. ``my_module`` squares a partition with
``calculate_squares`` in the dask worker process (each process starts its own squares-worker
on first use, its threads share it); ``pure Python`` with ``array('Q', (x * x for x in r))``,
the same job with no worker. Both run on the same cluster, alternating, R rounds each (default
3), for 1 and 2 dask worker processes x 1, 2 and 4 threads; the table gives the median
throughput in millions of numbers per second and the ratio of the two. The first round of each
variant is checked against the expected squares.

Then a dask.array row (issue 22): the same N numbers as a uint32 ``dask.array`` in P blocks
(``da.arange`` at the top of the u32 range, made inside the tasks), squared block by block with
``map_blocks`` three ways: ``numpy`` (``np.square(b, dtype=np.uint64)`` inside the task),
``my_module out=`` (``calculate_squares(b, out=np.empty(b.shape, np.uint64))``: the squares
written straight into the block's uint64 array) and ``my_module list`` (``calculate_squares(b)``
and ``np.array(list, np.uint64)``), each with ``meta=`` so that dask never calls them on the
client. A round computes the array on the cluster (``persist`` + ``wait``: the blocks stay on the
workers, so the figure is the tasks' work, not the transfer of 160 MB to the client); the
variants alternate in a rotating order, R + 2 rounds each, on 2 processes x 1 thread, after a
warm-up round whose results are gathered and checked against numpy's squares.

Then two costs that decide the task shape: a result returned as a list against the same
squares as an ``array('Q')`` (dask serializes a list element by element), and, for the
dask.array test's blocks, what the list API and ``out=`` cost per 250,000-number block against numpy.

matplotlib (only in this benchmark's venv) draws the curve to ``--png`` (default
``bench_dask.png`` beside this file): the throughput curve, and the dask.array row beside it. Timings are noisy on a shared machine: compare the
ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import my_module

HERE = Path(__file__).resolve().parent
SHAPES = [(1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4)]  # (processes, threads per process)
BLOCK = 250_000
ARRAY_SHAPE = (2, 1)  # the dask.array row's cluster: 2 processes x 1 thread (one task per core)


# -- the tasks (this file is __main__, so cloudpickle sends these by value) ----------------------

def squares_my_module(part: range) -> array:
    return array("Q", my_module.calculate_squares(part))


def squares_pure_python(part: range) -> array:
    return array("Q", (x * x for x in part))


def start_squares_worker() -> int:
    """Start this process's squares-worker (outside the timed rounds); its pid."""
    my_module.calculate_squares([1])
    return my_module.default_worker().pid


def squares_as_list(part: range) -> List[int]:
    return my_module.calculate_squares(part)


def block_numpy(block: Any) -> Any:
    import numpy as np

    return np.square(block, dtype=np.uint64)


def block_out(block: Any) -> Any:
    import numpy as np

    return my_module.calculate_squares(block, out=np.empty(block.shape, np.uint64))


def block_list(block: Any) -> Any:
    import numpy as np

    return np.array(my_module.calculate_squares(block), dtype=np.uint64)


ARRAY_VARIANTS: Dict[str, Callable[[Any], Any]] = {
    "numpy": block_numpy, "my_module out=": block_out, "my_module list": block_list}


# -- measuring -----------------------------------------------------------------------------------

def partitions(numbers: range, count: int) -> List[range]:
    step = -(-len(numbers) // count)
    return [numbers[i:i + step] for i in range(0, len(numbers), step)]


@contextlib.contextmanager
def local_client(processes: int, threads: int) -> Iterator[Any]:
    """A Client of a LocalCluster of ``processes`` worker processes x ``threads`` threads
    (loopback only, any free ports, no dashboard)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=processes, threads_per_worker=threads, processes=True,
                      host="127.0.0.1", scheduler_port=0, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def run_job(client, task: Callable, parts: Sequence[range]) -> List[array]:
    return client.gather(client.map(task, parts, pure=False))


def check(results: List[array], expected: array, what: str) -> None:
    got = array("Q")
    for a in results:
        got.extend(a)
    if got != expected:
        raise SystemExit(f"{what}: wrong squares")


def measure_shape(processes: int, threads: int, numbers: range, parts: List[range],
                  rounds: int, expected: array) -> Dict[str, Any]:
    variants = {"my_module": squares_my_module, "pure Python": squares_pure_python}
    times: Dict[str, List[float]] = {name: [] for name in variants}
    with local_client(processes, threads) as client:
        worker_pids = client.run(start_squares_worker)
        run_job(client, squares_pure_python, parts[:processes * threads])  # warm the cluster
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                t0 = time.perf_counter()
                results = run_job(client, variants[name], parts)
                times[name].append(time.perf_counter() - t0)
                if r == 0:
                    check(results, expected, f"{name} on {processes}x{threads}")
                del results
    row: Dict[str, Any] = {"processes": processes, "threads": threads,
                           "squares_workers": len(set(worker_pids.values()))}
    for name, ts in times.items():
        row[name] = {"median_s": statistics.median(ts), "min_s": min(ts),
                     "mnum_per_s": len(numbers) / statistics.median(ts) / 1e6}
    row["ratio"] = row["pure Python"]["median_s"] / row["my_module"]["median_s"]
    return row


def measure_result_shapes(size: int, rounds: int) -> Dict[str, float]:
    """µs per element to get a task's squares back as a list vs as an array('Q')."""
    part = range(2**32 - size, 2**32)
    found: Dict[str, float] = {}
    with local_client(1, 1) as client:
        client.run(start_squares_worker)
        for name, task in (("list", squares_as_list), ("array('Q')", squares_my_module)):
            ts = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                client.submit(task, part, pure=False).result()
                ts.append(time.perf_counter() - t0)
            found[name] = statistics.median(ts) / size * 1e6
    return found


def measure_dask_array(n: int, blocks: int, rounds: int) -> Dict[str, Any]:
    """The dask.array row: seconds to compute ``n`` uint32 squared in ``blocks`` blocks on the
    cluster, per variant (median of ``rounds``, rotating order), after a warm-up round that is checked."""
    import dask.array as da
    import numpy as np
    from distributed import wait

    processes, threads = ARRAY_SHAPE
    x: Any = da.arange(2**32 - n, 2**32, chunks=-(-n // blocks), dtype=np.uint32)
    expected = np.arange(2**32 - n, 2**32, dtype=np.uint64) ** 2
    meta = np.empty(0, np.uint64)
    times: Dict[str, List[float]] = {name: [] for name in ARRAY_VARIANTS}
    names = list(ARRAY_VARIANTS)
    with local_client(processes, threads) as client:
        client.run(start_squares_worker)
        x = x.persist()  # the numbers sit on the workers: the rounds time the squaring tasks
        wait(x)
        for r in range(-1, rounds):  # round -1: each variant warmed and checked, not timed
            for name in names[r % len(names):] + names[:r % len(names)]:
                y = x.map_blocks(ARRAY_VARIANTS[name], dtype=np.uint64, meta=meta,
                                 name=f"squares-{names.index(name)}-{r + 1}")  # never a cached result
                t0 = time.perf_counter()
                y = y.persist()
                wait(y)
                if r >= 0:
                    times[name].append(time.perf_counter() - t0)
                else:
                    got = y.compute()
                    if got.dtype != np.uint64 or not np.array_equal(got, expected):
                        raise SystemExit(f"dask.array, {name}: wrong squares")
                    del got
                del y
    row: Dict[str, Any] = {"numbers": n, "blocks": blocks, "processes": processes, "threads": threads}
    for name, ts in times.items():
        row[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "all_s": ts,
                     "mnum_per_s": n / statistics.median(ts) / 1e6}
    row["out / numpy"] = row["my_module out="]["median_s"] / row["numpy"]["median_s"]
    row["list / out"] = row["my_module list"]["median_s"] / row["my_module out="]["median_s"]
    return row


def print_array_row(row: Dict[str, Any]) -> None:
    print(f"\ndask.array: {row['numbers']:,} uint32 in {row['blocks']} blocks, squared to uint64 with "
          f"map_blocks on {row['processes']} x {row['threads']}; median of the rounds")
    for name in ARRAY_VARIANTS:
        print(f"  {name:<16} {row[name]['median_s']:8.3f} s  {row[name]['mnum_per_s']:8.1f} M numbers/s")
    verdict = "met" if row["out / numpy"] <= 1.5 else "missed"
    print(f"  my_module out= / numpy: {row['out / numpy']:.2f}x (target <= 1.5: {verdict}); "
          f"list / out=: {row['list / out']:.1f}x")


def measure_block_cost(rounds: int) -> Dict[str, float]:
    """µs per 250,000-number uint32 block: the list API's round trip and numpy's own squaring."""
    import numpy as np

    block = np.random.default_rng(13).integers(0, 2**32, size=BLOCK, dtype=np.uint32)
    worker = my_module.default_worker()
    my_module.calculate_squares([1])
    steps: Dict[str, Callable[[], Any]] = {
        "numpy astype(uint64) ** 2": lambda: block.astype(np.uint64) ** 2,
        "block.tolist()": block.tolist,
        "calculate_squares(block) (list out)": lambda: worker.calculate_squares(block),
        "np.fromiter(list, uint64)": None,  # filled below, needs a list of squares
        "calculate_squares(block, out=uint64 block)": lambda: worker.calculate_squares(
            block, out=np.empty(BLOCK, np.uint64)),
    }
    squares = worker.calculate_squares(block)
    steps["np.fromiter(list, uint64)"] = lambda: np.fromiter(squares, dtype=np.uint64, count=BLOCK)
    steps["whole block: calculate_squares + np.fromiter"] = lambda: np.fromiter(
        worker.calculate_squares(block), dtype=np.uint64, count=BLOCK)
    found: Dict[str, float] = {}
    for name, step in steps.items():
        ts = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        found[name] = statistics.median(ts) * 1e6
    return found


# -- output --------------------------------------------------------------------------------------

def print_table(rows: List[Dict[str, Any]], n: int, p: int) -> None:
    print(f"\n{n:,} numbers in {p} partitions; median of the rounds, millions of numbers per second")
    print(f"{'processes x threads':>20} | {'my_module':>10} | {'pure Python':>11} | {'ratio':>6}")
    for row in rows:
        print(f"{row['processes']:>12} x {row['threads']:<5} | {row['my_module']['mnum_per_s']:>10.1f} | "
              f"{row['pure Python']['mnum_per_s']:>11.1f} | {row['ratio']:>5.2f}x")


def plot(rows: List[Dict[str, Any]], n: int, p: int, path: Path,
         array_row: Optional[Dict[str, Any]] = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if array_row is None:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    else:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
        names = list(ARRAY_VARIANTS)
        values = [array_row[name]["mnum_per_s"] for name in names]
        bars = bx.bar(names, values, color=["tab:green", "tab:blue", "tab:gray"])
        bx.bar_label(bars, [f"{v:.0f}" for v in values], fontsize=8)
        bx.set_ylabel("millions of numbers squared per second")
        bx.set_title(f"dask.array: {array_row['numbers']:,} uint32 in {array_row['blocks']} blocks, "
                     f"{array_row['processes']} x {array_row['threads']}", fontsize=10)
        bx.grid(True, axis="y", alpha=0.3)
    colors = {"my_module": "tab:blue", "pure Python": "tab:orange"}
    lines = {1: ("--", "o"), 2: ("-", "s")}  # processes -> line style, marker
    for name, color in colors.items():
        for processes in sorted({r["processes"] for r in rows}):
            mine = [r for r in rows if r["processes"] == processes]
            style, marker = lines.get(processes, ("-.", "^"))
            ax.plot([r["threads"] for r in mine], [r[name]["mnum_per_s"] for r in mine],
                    linestyle=style, marker=marker, color=color,
                    label=f"{name}, {processes} process{'es' if processes > 1 else ''}")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4], ["1", "2", "4"])
    ax.set_xlabel("threads per dask worker process")
    ax.set_ylabel("millions of numbers squared per second")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{n:,} u32 numbers in {p} partitions on a LocalCluster "
                 f"({os.cpu_count()} cores)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"\nplot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=20_000_000)
    parser.add_argument("--partitions", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--png", type=Path, default=HERE / "bench_dask.png")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--replot", metavar="JSON", type=Path,
                        help="only redraw --png from the JSON of an earlier run (no measuring)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2,000,000 numbers, one shape per process count, no plot")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.replot.read_text())
        print_table(saved["shapes"], saved["numbers"], saved["partitions"])
        if saved.get("dask_array"):
            print_array_row(saved["dask_array"])
        plot(saved["shapes"], saved["numbers"], saved["partitions"], args.png, saved.get("dask_array"))
        return
    if args.quick:
        args.numbers, args.rounds = 2_000_000, 2
    import dask
    import distributed

    numbers = range(2**32 - args.numbers, 2**32)
    parts = partitions(numbers, args.partitions)
    print(f"dask {dask.__version__}, distributed {distributed.__version__}, Python "
          f"{platform.python_version()}, {os.cpu_count()} cores; worker: "
          f"{' '.join(my_module.default_worker().command)}")
    shapes = [(1, 2), (2, 2)] if args.quick else SHAPES
    expected = array("Q", (x * x for x in numbers))
    rows = []
    for processes, threads in shapes:
        row = measure_shape(processes, threads, numbers, parts, args.rounds, expected)
        rows.append(row)
        print(f"  {processes} x {threads}: my_module {row['my_module']['median_s']:.2f} s, "
              f"pure Python {row['pure Python']['median_s']:.2f} s", flush=True)
    print_table(rows, args.numbers, args.partitions)

    array_row = measure_dask_array(args.numbers, args.partitions, args.rounds + 2)
    print_array_row(array_row)

    size = 20_000 if args.quick else 100_000
    shapes_cost = measure_result_shapes(size, args.rounds)
    print(f"\na task's {size:,} squares back to the client (1 process), µs per element:")
    for name, us in shapes_cost.items():
        print(f"  as {name:<10} {us:8.3f}")

    block = measure_block_cost(5 if args.quick else 20)
    print(f"\none {BLOCK:,}-number uint32 block (in this process), median µs:")
    for name, us in block.items():
        print(f"  {name:<45} {us:10.0f}  ({us * 1000 / BLOCK:.1f} ns per number)")

    if not args.quick:
        plot(rows, args.numbers, args.partitions, args.png, array_row)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"numbers": args.numbers, "partitions": args.partitions, "rounds": args.rounds,
             "shapes": rows, "dask_array": array_row, "result_shapes_us_per_element": shapes_cost,
             "block_us": block}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
