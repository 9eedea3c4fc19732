"""The functions test_dask.py runs inside dask worker processes.

They live in a module of their own, importable by name in a worker process (dask's spawned
workers inherit the test process's ``sys.path``), so that cloudpickle sends them by reference
and their module globals are real per-process state: a barrier shared by a process's task
threads, the pids a process has seen. Nothing here holds a :class:`my_module.Worker` across a
pickle: each process reaches its own through the module-level functions.
"""

from __future__ import annotations

import os
import threading
from array import array
from typing import Dict, List, Tuple

import my_module

_barriers: Dict[Tuple[str, int], threading.Barrier] = {}
_barriers_lock = threading.Lock()


def squares_u64(numbers) -> array:
    """The task shape docs/scaling-out.md recommends: squares back as one ``array('Q')``, not a list.

    dask.distributed serializes a list result element by element (dask/distributed#6368): ~100×
    the cost of an array, which travels as one buffer (bench_dask.py measures both;
    docs/scaling-out.md has the figures). The squares of u32 numbers always fit a u64.
    """
    return array("Q", my_module.calculate_squares(numbers))


def squares_with_origin(numbers) -> Tuple[int, int, int, array]:
    """``squares_u64`` plus who did it: (dask process pid, thread ident, squares-worker pid)."""
    squares = squares_u64(numbers)
    return os.getpid(), threading.get_ident(), my_module.default_worker().pid, squares


def squares_at_rendezvous(numbers, name: str, parties: int) -> Tuple[int, int, int, array]:
    """Wait until ``parties`` task threads of this process are here, then square at once.

    A :class:`threading.Barrier` per process and name: the test pins ``parties`` tasks to each
    dask worker, one per thread, so that they share the process's one squares-worker with all
    their calls in flight together. A broken barrier (dask ran fewer at once) fails the task.
    """
    with _barriers_lock:
        barrier = _barriers.setdefault((name, os.getpid()), threading.Barrier(parties, timeout=30))
    barrier.wait()
    return squares_with_origin(numbers)


def square_block_u64(block):
    """A dask.array block of uint32 -> its uint64 squares, through the list API.

    ``calculate_squares`` takes the ndarray (``.tolist()`` in C) and returns a list of ints,
    which ``np.fromiter`` packs back into a uint64 block: one Python int per element each way
    (docs/scaling-out.md says what that costs per block).
    """
    import numpy as np

    squares = my_module.calculate_squares(block.ravel())
    return np.fromiter(squares, dtype=np.uint64, count=block.size).reshape(block.shape)


def square_block_into_out(block):
    """A dask.array block of uint32, of any shape -> its uint64 squares, written by the worker
    straight into the block's own uint64 array (``out=``): no Python int per element."""
    import numpy as np

    out = np.empty(block.shape, dtype=np.uint64)
    my_module.calculate_squares(np.ascontiguousarray(block).ravel(), out=out.reshape(-1))
    return out


def children_of_this_process() -> List[Tuple[int, Tuple[str, ...], str]]:
    """(pid, argv, state) of this process's children, from /proc."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = tuple(a.decode(errors="replace") for a in f.read().split(b"\0")[:-1])
        except OSError:
            continue  # exited while we looked
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[1].decode() == me:
            found.append((int(entry), argv, fields[0].decode()))
    return found


def live_children() -> List[int]:
    """Pids of this process's live children (a dask worker process has no other child than its
    squares-worker, whatever the worker command is: the Swift one or the reference one)."""
    return [pid for pid, _argv, state in children_of_this_process() if state != "Z"]


def default_worker_pid() -> int:
    """The pid of this process's default squares-worker, started if it was not yet."""
    worker = my_module.default_worker()
    if worker.pid is None:
        my_module.calculate_squares([1])
    return worker.pid


def square_until_released(numbers, started: str, release: str) -> Tuple[int, array]:
    """Publish (pid, squares-worker pid) in the Variable ``started``, then keep calls in flight
    until the Event ``release`` is set; return (pid, squares of ``numbers``).

    The test SIGKILLs this process while the loop runs, so the kill lands mid-task, most likely
    mid-call; dask reschedules the task on a live worker, where ``release`` is already set.
    """
    from distributed import Event, Variable

    gate = Event(release)
    if not gate.is_set():
        Variable(started).set((os.getpid(), default_worker_pid()))
        while not gate.is_set():
            my_module.calculate_squares(numbers)
    return os.getpid(), squares_u64(numbers)
