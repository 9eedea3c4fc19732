"""my_module inside dask.distributed: a real LocalCluster of worker processes, not a mock.

Two dask worker processes with four task threads each: every process starts its own
squares-worker on first use and its threads share it; only numbers (ranges, lists, arrays)
and results cross a pickle. The tests pin down exact results in order (``client.map``,
``dask.bag``, ``dask.array`` through the list API and with ``out=``), one squares-worker per
dask process, the refusal to pickle a Worker, what a SIGKILLed squares-worker costs its task
(nothing: the client starts another inside the same dask process) and what a SIGKILLed dask
process leaves behind (no squares-worker, and a rescheduled task's exact answer). The module
takes ~20-40 s on 2 cores; the cluster is shared by its tests and closed at the end, when every
dask process and squares-worker seen must have exited.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import time
from array import array
from typing import Dict, Iterable, Iterator, List

import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is a test tool installed by `make venv-dask` (make test)")
np = pytest.importorskip("numpy", reason="numpy is installed with dask by `make venv-dask`")
import cloudpickle  # noqa: E402  (installed with distributed)
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402

import my_module  # noqa: E402
from my_module._locate import find_worker  # noqa: E402

import dask_tasks  # noqa: E402
from resources import children, kill_child  # noqa: E402

PROCESSES = 2
THREADS = 4
N = 2_000_000
# The top of the u32 range, so that every square is past 2**53 where a float would round.
NUMBERS = range(2**32 - N, 2**32)
EXPECTED = array("Q", (x * x for x in NUMBERS))


class Seen:
    """Every process the tests saw, as pidfds: a pidfd turns readable once its process has
    exited, whoever its parent is by then (an orphaned squares-worker belongs to init), and it
    can never point at a reused pid."""

    def __init__(self) -> None:
        self.pidfds: Dict[int, int] = {}
        self.what: Dict[int, str] = {}

    def add(self, pid: int, what: str) -> bool:
        """Watch ``pid``; False if it had exited already (nothing to wait for)."""
        if pid in self.pidfds:
            return not self.exited(pid)
        try:
            self.pidfds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        self.what[pid] = what
        return True

    def exited(self, pid: int) -> bool:
        return bool(select.select([self.pidfds[pid]], [], [], 0)[0])

    def running(self, timeout: float, only: Iterable[int] = ()) -> List[str]:
        """Those still running (of ``only``, if given) after up to ``timeout`` s."""
        pids = list(only) or list(self.pidfds)
        deadline = time.monotonic() + timeout
        while True:
            left = [f"{self.what[pid]} {pid}" for pid in pids if not self.exited(pid)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def close(self) -> None:
        for fd in self.pidfds.values():
            os.close(fd)


def note_processes(client: distributed.Client, seen: Seen, on_error: str = "raise") -> None:
    """Record every dask worker process and its squares-workers."""
    for address, pid in client.run(os.getpid, on_error=on_error).items():
        seen.add(pid, f"dask worker process ({address})")
    for address, kids in client.run(dask_tasks.live_children, on_error=on_error).items():
        for kid in kids:
            seen.add(kid, f"squares-worker of {address}")


@pytest.fixture(scope="module")
def seen() -> Iterator[Seen]:
    s = Seen()
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(seen: Seen) -> Iterator[distributed.Client]:
    before = set(children())
    # Loopback only, any free ports, no dashboard.
    cluster = distributed.LocalCluster(
        n_workers=PROCESSES, threads_per_worker=THREADS, processes=True,
        host="127.0.0.1", scheduler_port=0, dashboard_address=None)
    try:
        with distributed.Client(cluster) as c:
            try:
                yield c
            finally:
                # A process that a failed test killed cannot answer: what it ran was noted
                # while the test saw it.
                note_processes(c, seen, on_error="ignore")
    finally:
        cluster.close(timeout=30)
        watched = sum(1 for what in seen.what.values() if what.startswith("squares-worker"))
        left = seen.running(timeout=15)
        for pid in set(children()) - before:
            kill_child(pid)  # a dask process that outlived close(): never left running
        assert not left, f"still running once the cluster closed: {left}"
        assert watched >= PROCESSES, f"only {watched} squares-workers were watched: the check above proved little"


def worker_addresses(client: distributed.Client) -> List[str]:
    addresses = sorted(client.scheduler_info()["workers"])
    assert len(addresses) == PROCESSES, f"expected {PROCESSES} dask workers, got {addresses}"
    return addresses


def parts(numbers: range, count: int) -> List[range]:
    step = -(-len(numbers) // count)
    return [numbers[i:i + step] for i in range(0, len(numbers), step)]


def concat(arrays) -> array:
    out = array("Q")
    for a in arrays:
        out.extend(a)
    return out


def test_client_map_over_2m_numbers_gives_the_exact_squares_in_order(client, seen) -> None:
    # Only ranges travel to the workers (a few bytes each); u64 arrays come back.
    results = client.gather(client.map(dask_tasks.squares_with_origin, parts(NUMBERS, 40)))
    assert concat(r[3] for r in results) == EXPECTED
    by_process: Dict[int, set] = {}
    for pid, _thread, worker_pid, _ in results:
        by_process.setdefault(pid, set()).add(worker_pid)
    assert len(by_process) == PROCESSES, f"the tasks ran in {sorted(by_process)}, not in both processes"
    for pid, worker_pids in by_process.items():
        assert len(worker_pids) == 1, f"dask process {pid} used several squares-workers {worker_pids}"
    note_processes(client, seen)


def test_task_threads_of_a_process_share_its_one_squares_worker_concurrently(client, seen) -> None:
    # THREADS tasks pinned to each process meet at a barrier, so that all of a process's task
    # threads call its squares-worker at once.
    futures = []
    chunks = iter(parts(NUMBERS, PROCESSES * THREADS))
    for address in worker_addresses(client):
        for _ in range(THREADS):
            futures.append(client.submit(
                dask_tasks.squares_at_rendezvous, next(chunks), "share", THREADS,
                workers=[address], allow_other_workers=False, pure=False))
    results = client.gather(futures)
    assert concat(r[3] for r in results) == EXPECTED
    for address, pid in client.run(os.getpid).items():
        mine = [r for r in results if r[0] == pid]
        assert len({r[1] for r in mine}) == THREADS, f"{address}: not {THREADS} threads at once"
        assert len({r[2] for r in mine}) == 1, f"{address}: its threads used several squares-workers"
    note_processes(client, seen)


@pytest.fixture(scope="module", autouse=True)
def children_before() -> set:
    """This process's children before this module's first test (an earlier test's Worker may still run one)."""
    return {k[0] for k in dask_tasks.children_of_this_process()}


def test_each_dask_process_has_exactly_one_squares_worker_child(children_before, client, seen) -> None:
    started = client.run(dask_tasks.default_worker_pid)
    kids = client.run(dask_tasks.children_of_this_process)
    assert set(kids) == set(started) and len(started) == PROCESSES
    argv = find_worker()  # what the lookup finds here, as in the dask processes
    for address, pid in started.items():
        live = [k for k in kids[address] if k[2] != "Z"]
        assert [k[0] for k in live] == [pid], (
            f"{address}: expected one child, its squares-worker (pid {pid}); children are {kids[address]}")
        assert runs(live[0][1], argv), f"{address}: its child runs {live[0][1]}, not {argv}"
    note_processes(client, seen)
    # The test process itself never needed one: nothing was computed here.
    assert not [k for k in dask_tasks.children_of_this_process() if runs(k[1], argv) and k[0] not in children_before]


def runs(cmdline, argv) -> bool:
    """Whether a process's ``cmdline`` is the command ``argv`` (a launcher such as pyenv's
    shim may have put the full path in place of argv[0]), arguments added at the end or not."""
    if len(cmdline) < len(argv) or tuple(cmdline[1:len(argv)]) != tuple(argv[1:]):
        return False
    return os.path.basename(cmdline[0]) == os.path.basename(argv[0])


# The bag holds the numbers themselves, on purpose (the user's way); dask's advice to load
# them in the workers instead is what the client.map test does.
@pytest.mark.filterwarnings("ignore:Sending large graph")
def test_dask_bag_over_2m_numbers_gives_the_exact_squares_in_order(client) -> None:
    # A bag of the numbers themselves (shipped in the graph as lists), squared a partition per
    # call; each partition comes back as a u64 array (dask serializes a list result element by
    # element, ~100× slower: docs/scaling-out.md).
    bag = db.from_sequence(NUMBERS, npartitions=20)
    squared = bag.map_partitions(dask_tasks.squares_u64)
    arrays = client.gather(client.compute(squared.to_delayed()))
    assert len(arrays) == 20
    assert concat(arrays) == EXPECTED


def test_dask_array_of_uint32_squared_block_by_block_equals_numpy(client) -> None:
    rng = np.random.default_rng(13)
    x_np = rng.integers(0, 2**32, size=N, dtype=np.uint32)
    x_np[:3] = [0, 1, 2**32 - 1]  # the extremes, in the first block
    x = da.from_array(x_np, chunks=250_000)
    y = x.map_blocks(dask_tasks.square_block_u64, dtype=np.uint64)
    got = client.compute(y).result()
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, x_np.astype("uint64") ** 2)
    assert got[2] == 18446744065119617025


def test_dask_array_squared_into_out_blocks_equals_numpy(client) -> None:
    # The form docs/scaling-out.md gives: each block's squares written into a uint64 block of
    # its own (out=), meta= so that dask never calls the function on the client to learn the
    # output type. Uneven blocks (the last one shorter), the extremes in the first and last.
    rng = np.random.default_rng(22)
    x_np = rng.integers(0, 2**32, size=N, dtype=np.uint32)
    x_np[:3] = [0, 1, 2**32 - 1]
    x_np[-1] = 2**32 - 1
    x = da.from_array(x_np, chunks=300_000)
    y = x.map_blocks(lambda b: my_module.calculate_squares(b, out=np.empty(b.shape, np.uint64)),
                     dtype=np.uint64, meta=np.empty(0, np.uint64))
    got = client.compute(y).result()
    assert got.dtype == np.uint64 and got.shape == (N,)
    np.testing.assert_array_equal(got, x_np.astype(np.uint64) ** 2)
    assert got[2] == got[-1] == 18446744065119617025

    # 2-D blocks through the helper (a block raveled, its out= reshaped: views, no copy).
    m_np = x_np[:1_000_000].reshape(1000, 1000)
    m = da.from_array(m_np, chunks=(300, 400))
    got2 = client.compute(m.map_blocks(dask_tasks.square_block_into_out, dtype=np.uint64,
                                       meta=np.empty((0, 0), np.uint64))).result()
    assert got2.dtype == np.uint64 and got2.shape == (1000, 1000)
    np.testing.assert_array_equal(got2, m_np.astype(np.uint64) ** 2)


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception it was raised from or during."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def test_a_worker_never_travels_in_a_pickle(client) -> None:
    with my_module.Worker() as worker:
        for pickler in (pickle.dumps, cloudpickle.dumps):
            with pytest.raises(TypeError, match="cannot be pickled"):
                pickler(worker)
            with pytest.raises(TypeError, match="cannot be pickled"):
                pickler(worker.calculate_squares)  # a bound method carries its Worker
        # dask refuses to send it as an argument before any task runs: its own TypeError
        # ("Could not serialize object of type ...") is raised from ours, which says what to do.
        with pytest.raises(TypeError) as refused:
            client.submit(dask_tasks.squares_u64, worker, pure=False).result(timeout=30)
        assert any("a my_module.Worker cannot be pickled" in str(e) for e in causes(refused.value)), (
            f"the Worker's own reason is not in the chain of {refused.value!r}")
    with pytest.raises(TypeError, match="cannot be pickled"):
        cloudpickle.dumps(my_module.default_worker())
    # The module-level function travels by reference (module and name): the receiving process
    # uses its own default worker.
    assert len(cloudpickle.dumps(my_module.calculate_squares)) < 200
    assert client.submit(my_module.calculate_squares, [3, 2**32 - 1], pure=False).result(timeout=30) == [
        9, 18446744065119617025]


@contextlib.contextmanager
def released(client: distributed.Client, release: str) -> Iterator[None]:
    """Set the Event ``release`` on the way out, failed assertion or not, so that a
    ``square_until_released`` task never outlives its test."""
    try:
        yield
    finally:
        distributed.Event(release, client=client).set()


def kill_grandchild(pid: int, parent: int) -> bool:
    """SIGKILL ``pid`` only if it is a live child of ``parent`` (through a pidfd: no reused pid)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[1] != str(parent).encode() or fields[0] == b"Z":
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    except (OSError, ProcessLookupError):
        return False
    finally:
        os.close(pidfd)


def test_a_sigkilled_squares_worker_is_replaced_inside_its_dask_process_and_the_task_stays_exact(
        client, seen) -> None:
    # The client's own retry, not dask's: the dask process lives on, the task is not rescheduled.
    started, release = "worker-kill-started", "worker-kill-release"
    chunk = NUMBERS[-200_000:]
    future = client.submit(dask_tasks.square_until_released, chunk, started, release, pure=False)
    with released(client, release):
        process, killed = distributed.Variable(started, client=client).get(timeout=30)
        assert seen.add(killed, "SIGKILLed squares-worker")
        assert kill_grandchild(killed, process), f"squares-worker {killed} is not a live child of {process}"
    pid, squares = future.result(timeout=45)
    assert pid == process, "the task was rescheduled: the squares-worker's death reached dask"
    assert squares == EXPECTED[-200_000:]
    assert not seen.running(timeout=10, only=[killed])
    pids, kids = client.run(os.getpid), client.run(dask_tasks.live_children)
    now = {pids[address]: kids[address] for address in pids}
    assert len(now[process]) == 1 and now[process] != [killed], (
        f"dask process {process}: squares-worker children {now[process]}, killed {killed}")
    note_processes(client, seen)


def test_a_sigkilled_dask_process_leaves_no_squares_worker_and_its_task_is_retried(client, seen) -> None:
    started, release = "sigkill-started", "sigkill-release"
    chunk = NUMBERS[:200_000]
    future = client.submit(dask_tasks.square_until_released, chunk, started, release, pure=False)
    with released(client, release):
        victim, victim_worker = distributed.Variable(started, client=client).get(timeout=30)
        assert seen.add(victim, "SIGKILLed dask worker process")
        assert seen.add(victim_worker, "squares-worker of the SIGKILLed dask process")
        assert kill_child(victim, signal.SIGKILL), f"dask process {victim} is not a live child of the test process"
    pid, squares = future.result(timeout=45)
    assert pid != victim
    assert squares == EXPECTED[:200_000]
    # The orphan reads EOF on its stdin and exits by itself.
    assert not seen.running(timeout=10, only=[victim_worker])
    # The nanny starts a replacement; it gets its own squares-worker on first use.
    deadline = time.monotonic() + 30
    while len(client.scheduler_info()["workers"]) < PROCESSES and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(client.scheduler_info()["workers"]) == PROCESSES, "the nanny did not restart the killed process"
    assert len(set(client.run(dask_tasks.default_worker_pid).values())) == PROCESSES
    note_processes(client, seen)
