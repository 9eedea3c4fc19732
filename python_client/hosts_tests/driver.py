"""The client host's program: a dask Client connected to ``tcp://<scheduler>:8786``, driven by
test_hosts.py (or bench_hosts.py) one JSON command per line on stdin, one JSON reply per line on
stdout (``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "<traceback>"}``); dask's
logs go to stderr.

It runs on the client host with that host's venv (dask, numpy and the my_module wheel), as a
copy in the host's HOME: nothing of the checkout is on its path. The task functions below are
defined in ``__main__``, so cloudpickle sends them by value; on a worker they import the
``my_module`` installed on that host. Results are checked here, against numpy's uint64
arithmetic, and the replies carry what the test asserts on: counts, mismatching indices, who
computed what (dask worker address, process id, squares-worker pid).
"""

from __future__ import annotations

import inspect
import json
import os
import statistics
import sys
import time
import traceback
from array import array
from typing import Dict, List

import numpy as np

import dask.array as da
import distributed

TOP = 2**32 - 1


# --- task functions (run on the worker hosts)


def squares_with_origin(numbers):
    """A list of numbers -> (address, pid, squares-worker pid, the squares as one array('Q')):
    a list result would be serialized element by element (docs/scaling-out.md)."""
    import my_module

    squares = array("Q", my_module.calculate_squares(numbers))
    return distributed.get_worker().address, os.getpid(), my_module.default_worker().pid, squares


def square_block_u64(block):
    """A dask.array block of uint32 -> its uint64 squares, written by the squares-worker straight
    into the block's own uint64 array (out=, issue 22): no Python int per element either way."""
    import my_module

    out = np.empty(block.shape, dtype=np.uint64)
    flat = out.reshape(-1)  # a view of out, as the raveled block is of block
    if my_module.calculate_squares(np.ascontiguousarray(block).ravel(), out=flat) is not flat:
        raise AssertionError("calculate_squares(out=) did not return out")
    return out


def whoami(dask_worker):
    """What a dask worker process is and where its my_module comes from (``client.run``); starts
    its default squares-worker if no task has yet."""
    import my_module

    worker = my_module.default_worker()
    if worker.pid is None:
        my_module.calculate_squares([1])
    return {
        "address": dask_worker.address, "pid": os.getpid(), "ppid": os.getppid(),
        "squares_worker": worker.pid, "prefix": sys.prefix, "module": my_module.__file__,
        "sys_path": sys.path, "path": os.environ.get("PATH", ""), "cwd": os.getcwd(),
        "worker_env": os.environ.get("MY_MODULE_WORKER"), "python": sys.executable,
    }


def square_until_released(numbers, name, index):
    """Publish (address, pid, squares-worker pid) in the Variable ``<name>-started-<index>``,
    then keep calls in flight until the Event ``<name>-release`` is set; then square once more
    and return who did it. A rerun (rescheduled after its first host died) finds the Event set
    and only squares."""
    import my_module
    from distributed import Event, Variable, get_worker

    gate = Event(f"{name}-release")
    looped = 0
    if not gate.is_set():
        default = my_module.default_worker()
        if default.pid is None:
            my_module.calculate_squares([1])
        Variable(f"{name}-started-{index}").set(
            {"address": get_worker().address, "pid": os.getpid(), "squares_worker": default.pid})
        while not gate.is_set():
            my_module.calculate_squares(numbers)
            looped += 1
    squares = array("Q", my_module.calculate_squares(numbers))
    return get_worker().address, os.getpid(), my_module.default_worker().pid, looped, squares


def squares_pure_python(numbers):
    return distributed.get_worker().address, array("Q", (x * x for x in numbers))


def squares_my_module(numbers):
    import my_module

    return distributed.get_worker().address, array("Q", my_module.calculate_squares(numbers))


# --- checks (here, on the client host)


def top_numbers(count: int, at: int = 0) -> range:
    """``count`` numbers ending at the top of the u32 range (every square past 2**53)."""
    return range(TOP + 1 - count + at, TOP + 1)


def mismatches(got: np.ndarray, numbers: range) -> Dict:
    expected = np.arange(numbers.start, numbers.stop, dtype=np.uint64) ** 2
    if got.shape != expected.shape:
        return {"count": int(got.size), "expected_count": int(expected.size), "mismatches": ["size"]}
    bad = np.flatnonzero(got != expected)
    return {"count": int(got.size), "expected_count": int(expected.size),
            "mismatches": [int(i) for i in bad[:5]], "mismatch_total": int(bad.size),
            "last": int(got[-1]) if got.size else None}


def u64(arrays) -> np.ndarray:
    return np.concatenate([np.frombuffer(a, dtype=np.uint64) for a in arrays]) if arrays else np.empty(0, np.uint64)


class Session:
    def __init__(self, address: str) -> None:
        self.address = address
        self.client = None
        self.held: Dict[str, list] = {}

    def op_connect(self, workers: int, timeout: float):
        self.client = distributed.Client(self.address, timeout=timeout)
        if workers:
            self.client.wait_for_workers(workers, timeout=timeout)
        return self.op_workers()

    def op_workers(self):
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    def op_wait_workers(self, count: int, timeout: float, without: str = ""):
        """Until the scheduler lists ``count`` workers, none of them with ``without`` in its
        address."""
        deadline = time.monotonic() + timeout
        while True:
            workers = self.op_workers()
            if len(workers) == count and not [w for w in workers if without and without in w]:
                return workers
            if time.monotonic() > deadline:
                raise TimeoutError(f"after {timeout} s the scheduler lists {workers}, not {count}"
                                   f"{' without ' + without if without else ''}")
            time.sleep(0.1)

    def op_whoami(self):
        return self.client.run(whoami)

    def op_map(self, count: int, parts: int, timeout: float):
        """client.map over lists of numbers at the top of the u32 range."""
        numbers = top_numbers(count)
        step = -(-count // parts)
        lists = [list(numbers[i:i + step]) for i in range(0, count, step)]
        started = time.perf_counter()
        futures = self.client.map(squares_with_origin, lists, pure=False)
        distributed.wait(futures, timeout=timeout)
        results = self.client.gather(futures)
        seconds = time.perf_counter() - started
        report = mismatches(u64([r[3] for r in results]), numbers)
        by_address: Dict[str, Dict] = {}
        for address, pid, worker_pid, squares in results:
            entry = by_address.setdefault(address, {"tasks": 0, "pids": [], "squares_workers": []})
            entry["tasks"] += 1
            entry["pids"] = sorted(set(entry["pids"]) | {pid})
            entry["squares_workers"] = sorted(set(entry["squares_workers"]) | {worker_pid})
        # The module-level function itself, sent by reference: the scheduler and this client
        # must be able to import my_module too (dask unpickles the graph on the scheduler).
        import my_module

        direct = self.client.submit(my_module.calculate_squares, [0, 1, 65536, TOP], pure=False).result(timeout=60)
        return {**report, "tasks": len(results), "by_address": by_address, "seconds": seconds, "direct": direct}

    def op_array(self, count: int, chunks: int, timeout: float):
        rng = np.random.default_rng(24)
        x_np = rng.integers(0, 2**32, size=count, dtype=np.uint32)
        x_np[:3] = [0, 1, TOP]
        x_np[-1] = TOP
        x = da.from_array(x_np, chunks=chunks)
        # meta= (not only dtype=): otherwise dask calls the function on an empty block here, on
        # the client, to learn what it returns, which starts a squares-worker on the client host.
        y = x.map_blocks(square_block_u64, dtype=np.uint64, meta=np.empty((0,), dtype=np.uint64))
        got = self.client.compute(y).result(timeout=timeout)
        expected = x_np.astype(np.uint64) ** 2
        bad = np.flatnonzero(got != expected)
        return {"dtype": str(got.dtype), "count": int(got.size), "blocks": len(y.chunks[0]),
                "mismatches": [int(i) for i in bad[:5]], "mismatch_total": int(bad.size),
                "first": [int(v) for v in got[:3]], "last": int(got[-1])}

    def op_hold(self, name: str, count: int, addresses: List[str], strict: bool, timeout: float):
        """Task i squares the i-th ``count`` of ``count * len(addresses)`` top numbers, pinned to
        ``addresses[i]`` (``strict`` forbids any other worker), in a loop until
        :meth:`op_release`; returns once every task has started, with who runs it."""
        numbers = top_numbers(count * len(addresses))
        futures = [
            self.client.submit(square_until_released, list(numbers[i * count:(i + 1) * count]), name, i,
                               workers=[address], allow_other_workers=not strict, pure=False)
            for i, address in enumerate(addresses)
        ]
        self.held[name] = (numbers, futures)
        deadline = time.monotonic() + timeout
        started = []
        for i in range(len(addresses)):
            left = max(1.0, deadline - time.monotonic())
            started.append(distributed.Variable(f"{name}-started-{i}", client=self.client).get(timeout=left))
        return started

    def op_release(self, name: str, timeout: float):
        """Set the Event the held tasks loop on, gather them (in order) and check the squares."""
        distributed.Event(f"{name}-release", client=self.client).set()
        numbers, futures = self.held.pop(name)
        distributed.wait(futures, timeout=timeout)
        results = self.client.gather(futures, errors="raise")
        tasks = [{"address": a, "pid": p, "squares_worker": w, "looped": n, "count": len(s)}
                 for a, p, w, n, s in results]
        return {**mismatches(u64([r[4] for r in results]), numbers), "tasks": tasks}

    def op_bench(self, count: int, parts: int, rounds: int, timeout: float, local_processes: int = 0,
                 local_threads: int = 0, direct: bool = False):
        """bench_dask.py's job: the top ``count`` numbers of the u32 range in ``parts`` ranges,
        squares back as array('Q'), gathered here; my_module and pure Python alternating,
        ``rounds`` rounds each. On the cluster of the lab's hosts, or, with ``local_processes``, on
        a LocalCluster started here on the client host (loopback), for comparison. ``direct``:
        the client gathers the results from the workers themselves, not through the scheduler
        (dask's default for a client outside the cluster)."""
        if not local_processes:
            return self._bench(self.client, count, parts, rounds, timeout, direct)
        cluster = distributed.LocalCluster(
            n_workers=local_processes, threads_per_worker=local_threads, processes=True,
            host="127.0.0.1", scheduler_port=0, dashboard_address=None)
        try:
            with distributed.Client(cluster) as client:
                return self._bench(client, count, parts, rounds, timeout, direct)
        finally:
            cluster.close(timeout=30)

    @staticmethod
    def _bench(client, count: int, parts: int, rounds: int, timeout: float, direct: bool):
        deadline = time.monotonic() + timeout
        numbers = top_numbers(count)
        step = -(-count // parts)
        chunks = [numbers[i:i + step] for i in range(0, count, step)]
        expected_last = numbers[-1] ** 2
        variants = {"my_module": squares_my_module, "pure_python": squares_pure_python}
        times: Dict[str, List[float]] = {label: [] for label in variants}
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        # Not timed: every process imports my_module and starts its squares-worker.
        for func in variants.values():
            client.gather(client.map(func, chunks[: workers * 4], pure=False))
        loads = [os.getloadavg()[0]]
        tasks: Dict[str, int] = {}
        for _ in range(rounds):
            for label, func in variants.items():
                started = time.perf_counter()
                futures = client.map(func, chunks, pure=False)
                distributed.wait(futures, timeout=max(1.0, deadline - time.monotonic()))
                results = client.gather(futures, direct=direct)
                times[label].append(time.perf_counter() - started)
                got = u64([r[1] for r in results])
                for address, _ in results:
                    tasks[address] = tasks.get(address, 0) + 1
                if got.size != count or int(got[-1]) != expected_last or int(got[0]) != numbers[0] ** 2:
                    raise AssertionError(f"{label}: wrong squares")
                del futures, results, got
            loads.append(os.getloadavg()[0])
        return {"workers": workers, "times": times, "load_average": loads, "tasks_by_worker": tasks,
                "median": {label: statistics.median(t) for label, t in times.items()}}

    def op_quit(self):
        if self.client is not None:
            self.client.close(timeout=30)
            self.client = None
        return None


def main() -> None:
    address = sys.argv[1]
    # Replies on the original stdout, everything else (prints of any library) on stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    session = Session(address)
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        try:
            method = getattr(session, f"op_{op}")
            if "timeout" not in inspect.signature(method).parameters:
                command.pop("timeout", None)
            reply = {"ok": True, "result": method(**command)}
        except BaseException:  # noqa: BLE001 - every failure goes back to the test
            reply = {"ok": False, "error": traceback.format_exc()}
        print(f"driver: {op} -> {'ok' if reply['ok'] else 'failed'}", file=sys.stderr, flush=True)
        replies.write(json.dumps(reply) + "\n")
        if op == "quit":
            return


if __name__ == "__main__":
    main()
