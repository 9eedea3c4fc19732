"""The shm plane under faults (issue 12): the worker SIGKILLed at random moments under load,
the client SIGKILLed mid-call, 16 threads at once, cancellations, timeouts and interrupts.

Every call returns the exact squares or raises a documented error, within its timeout; while
the Worker is open its pool keeps at most ``max_idle`` idle segments and holds no other; once
it is closed (or its process is gone) no process on the machine maps or holds an fd of one of
its memfds, nothing of it is in /dev/shm, and the process holds what it held before.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import pytest

import my_module
from my_module import _shm

from conftest import in_flight, wait_until
from load import log_uniform_size, run_threads
from resources import Snapshot, assert_no_leaks, kill_child

SRC = Path(__file__).resolve().parents[2] / "src"
MEMFD = re.compile(r"/memfd:(my_module-[0-9a-f]+-)(\d+) \(deleted\)")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "memfd_create"),
                       reason="Linux memfd and procfs only"),
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux 5.3+)"),
]


# -- helpers ----------------------------------------------------------------------------------------


def pool_of(w: my_module.Worker) -> _shm.Pool:
    return w._session._conn.pool  # type: ignore[union-attr]


def skip_without_shm(w: my_module.Worker) -> None:
    if "shm" not in w.info["encodings"]:
        pytest.skip("the worker does not serve shm (protocol 1.1)")


def u32s(rng: random.Random, n: int) -> array:
    """``n`` random u32 over the whole range (squares past 2**53), as a compact array."""
    return array("I", rng.getrandbits(32 * n).to_bytes(4 * n, "little"))


def exact(result: Any, numbers: Iterable[int]) -> bool:
    """``result == [x * x for x in numbers]``, without building the second list."""
    return (type(result) is list and len(result) == len(numbers)  # type: ignore[arg-type]
            and all(r == x * x for r, x in zip(result, numbers)))


class Prefixes:
    """Records the shm prefix of every pool made while it is installed (one per connection)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: List[str] = []
        make = _shm.new_prefix

        def recording() -> str:
            prefix = make()
            self.seen.append(prefix)
            return prefix

        monkeypatch.setattr(_shm, "new_prefix", recording)


def holders(prefixes: Iterable[str], pids: Optional[Iterable[int]] = None) -> List[Tuple[int, str, str]]:
    """(pid, "map" or "fd", name) for every mapping or fd of a memfd named with one of
    ``prefixes``, in every process we can read (default) or in ``pids``."""
    wanted = set(prefixes)
    found: List[Tuple[int, str, str]] = []
    for pid in pids if pids is not None else (int(e) for e in os.listdir("/proc") if e.isdigit()):
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    m = MEMFD.search(line)
                    if m and m.group(1) in wanted:
                        found.append((pid, "map", m.group(1) + m.group(2)))
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                m = MEMFD.fullmatch(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
            if m and m.group(1) in wanted:
                found.append((pid, "fd", m.group(1) + m.group(2)))
    return found


def own_memfds(prefixes: Iterable[str]) -> Dict[int, str]:
    """Our fds of memfds named with one of ``prefixes`` -> the memfd's name."""
    wanted, found = set(prefixes), {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            m = MEMFD.fullmatch(os.readlink(f"/proc/self/fd/{entry}"))
        except OSError:
            continue
        if m and m.group(1) in wanted:
            found[int(entry)] = m.group(1) + m.group(2)
    return found


def own_mappings(prefixes: Iterable[str]) -> List[str]:
    return [name for pid, kind, name in holders(prefixes, [os.getpid()]) if kind == "map"]


def in_dev_shm(prefixes: Iterable[str]) -> List[str]:
    if not os.path.isdir("/dev/shm"):
        return []
    return [n for n in os.listdir("/dev/shm") if any(p in n for p in prefixes)]


def only_idle_segments_held(w: my_module.Worker, prefixes: List[str]) -> bool:
    """Our fds and mappings of the Worker's memfds are exactly its current pool's idle ones:
    every other segment it made (in use before, or of a connection that ended) is closed."""
    idle = {s.fd: s.name for s in list(pool_of(w)._idle)}
    fds = own_memfds(prefixes)
    per_name: Dict[str, int] = {}
    for name in fds.values():
        per_name[name] = per_name.get(name, 0) + 1
    # Each segment's own fd, and the duplicate mmap.mmap keeps (CPython dups the fd it maps).
    return (set(fds.values()) == set(idle.values()) and set(idle) <= set(fds)
            and all(n <= 2 for n in per_name.values()) and sorted(own_mappings(prefixes)) == sorted(idle.values()))


def assert_nothing_anywhere(prefixes: List[str]) -> None:
    """No process maps or holds one of these memfds (bounded wait: a killed process's mappings
    go when the kernel has torn it down), and /dev/shm has nothing of them."""
    assert prefixes
    left: List[Tuple[int, str, str]] = []

    def clear() -> bool:
        left[:] = holders(prefixes)
        return not left

    try:
        wait_until(clear, 10, "no process maps or holds our memfds")
    except BaseException:
        raise AssertionError(f"still held: {left[:20]}") from None
    assert in_dev_shm(prefixes) == []


# -- SIGKILL of the worker at random moments under load ------------------------------------------------

# Kills the process of the pidfd it inherits as soon as that process maps one of our memfds
# (mid-request for sure). A process of its own: a thread of ours would poll only as often as
# the GIL, busy with the load, lets it.
KILL_ON_MAPPING = r"""
import os, signal, sys, time
pidfd, pid, deadline = int(sys.argv[1]), int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        with open("/proc/%d/maps" % pid, "rb") as f:
            mapped = b"/memfd:my_module-" in f.read()
    except OSError:
        sys.exit("gone")
    if mapped:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        sys.exit(0)
sys.exit("never saw a mapping")
"""


def child_pidfd(pid: int) -> Optional[int]:
    """A pidfd of ``pid`` if it is our live child (it pins that process: no reused pid)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        if fields[0] != b"Z" and int(fields[1]) == os.getpid():
            return pidfd
    except OSError:
        pass
    os.close(pidfd)
    return None


def test_worker_sigkilled_at_random_moments_during_big_shm_calls(worker_command, monkeypatch) -> None:
    # 3 rounds; in each, 3 threads call with 100,000 to 3,000,000 numbers (a segment per chunk
    # of up to 2,097,152) while the worker is SIGKILLed twice: at a random moment, then (its
    # successor) as soon as it maps one of our segments. Each call: the exact squares (the
    # retry) or WorkerCrashedError naming the SIGKILL (killed on its retry too); none hangs.
    prefixes = Prefixes(monkeypatch)
    before = Snapshot.settled()
    w = my_module.Worker(worker_command)
    try:
        skip_without_shm(w)
    except BaseException:
        w.close()
        raise
    outcomes: Dict[str, int] = {"ok": 0, "WorkerCrashedError": 0}
    bad: List[str] = []
    lock = threading.Lock()
    kills: List[Tuple[int, str]] = []  # (pid, "random" or "mapping")
    timeout = 30.0

    def load(seed: int, killed: threading.Event) -> None:
        rng = random.Random(seed)
        calls = 0
        while calls < 3 or not killed.is_set():  # until the killer is done, 3 calls at least
            calls += 1
            numbers = u32s(rng, log_uniform_size(rng, 100_000, 3_000_000))
            started = time.monotonic()
            try:
                if rng.random() < 0.5:
                    result = w.calculate_squares(numbers, timeout=timeout)
                else:
                    result = w.submit(numbers, timeout=timeout).result(timeout=timeout + 10)
                kind = "ok" if exact(result, numbers) else "wrong result"
                del result
            except my_module.WorkerCrashedError as exc:
                kind = "WorkerCrashedError" if "SIGKILL" in str(exc) else f"crash not by SIGKILL: {exc}"
            except BaseException as exc:  # TimeoutError (a hang), anything else: a failure
                kind = f"{type(exc).__name__}: {exc} after {time.monotonic() - started:.1f} s"
            with lock:
                if kind in outcomes:
                    outcomes[kind] += 1
                else:
                    bad.append(f"{len(numbers)} numbers: {kind}")

    def killer(seed: int, killed: threading.Event) -> None:
        rng = random.Random(seed)
        try:
            time.sleep(rng.uniform(0.01, 0.8))
            killed_pid = w.pid
            if killed_pid is not None and kill_child(killed_pid):
                kills.append((killed_pid, "random"))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the next worker, once up
                pid = w.pid
                pidfd = None if pid is None or pid == killed_pid else child_pidfd(pid)
                if pidfd is not None:
                    break
                time.sleep(0.005)
            else:
                return
            try:
                poller = subprocess.run([sys.executable, "-c", KILL_ON_MAPPING, str(pidfd), str(pid), "20"],
                                        pass_fds=(pidfd,), capture_output=True, text=True, timeout=40)
            finally:
                os.close(pidfd)
            if poller.returncode == 0:
                kills.append((pid, "mapping"))
            else:
                bad.append(f"the poller of worker {pid} failed: {poller.stderr.strip()[-500:]}")
        finally:
            killed.set()

    for round_ in range(3):
        killed = threading.Event()
        kill_thread = threading.Thread(target=killer, args=(round_, killed), name="killer")
        kill_thread.start()
        try:
            run_threads(3, lambda i: load(100 * round_ + i, killed), join_timeout=45)
        finally:
            killed.set()
            kill_thread.join(timeout=45)
        assert not kill_thread.is_alive()

    # Still open: bounded idle segments, an exact next call, nothing held of dead connections.
    try:
        assert len(pool_of(w)._idle) <= pool_of(w).max_idle
        numbers = u32s(random.Random(7), 2_500_000)
        assert exact(w.calculate_squares(numbers, timeout=timeout), numbers)
        pool = pool_of(w)
        assert len(pool._idle) <= pool.max_idle and pool._made >= 1 and not pool.closed
        wait_until(lambda: only_idle_segments_held(w, prefixes.seen), 10,
                   "the only segments we hold are the current pool's idle ones")
    finally:
        w.close()
    print(f"\n[shm worker kills] SIGKILLs {kills}, {len(prefixes.seen)} pools; outcomes {outcomes}; failures {bad}")
    assert bad == []
    assert outcomes["ok"] > 0
    assert [how for _, how in kills].count("mapping") == 3  # each round killed one mid-request
    assert len(prefixes.seen) >= 1 + len(kills)  # a fresh pool per worker
    assert_nothing_anywhere(prefixes.seen)
    assert_no_leaks(before)


# -- SIGKILL of the client --------------------------------------------------------------------------


CLIENT = r"""
import json, random, sys, threading
from array import array
import my_module
from my_module import _shm
w = my_module.Worker(json.loads(sys.argv[1]))
if "shm" not in w.info["encodings"]:
    print("no-shm", flush=True)
    sys.exit(0)
print("ready", w._session._conn.pool.prefix, w.pid, flush=True)

def load(seed):
    rng = random.Random(seed)
    while True:
        n = rng.randrange(100_000, 3_000_000)
        numbers = array("I", rng.getrandbits(32 * n).to_bytes(4 * n, "little"))
        result = w.calculate_squares(numbers, timeout=60)
        assert len(result) == n and result[-1] == numbers[-1] ** 2

threads = [threading.Thread(target=load, args=(int(sys.argv[2]) * 10 + i,)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_client_sigkilled_mid_call_leaves_no_worker_and_no_mapping(worker_command) -> None:
    # 4 rounds: a client process makes big shm calls from 3 threads and is SIGKILLed, at a
    # random moment (even rounds) or as soon as its worker maps one of its segments (odd):
    # its worker (not our child: the client's) must exit, and nothing may map its memfds.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(SRC), os.environ.get("PYTHONPATH"))))}
    rng = random.Random(12)
    prefixes: List[str] = []
    mapped_at_kill = 0
    for round_ in range(4):
        client = subprocess.Popen([sys.executable, "-c", CLIENT, json.dumps(list(worker_command)), str(round_)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        try:
            assert client.stdout is not None
            line = client.stdout.readline().split()  # blocks at most the client's start-up
            if line == ["no-shm"]:
                pytest.skip("the worker does not serve shm (protocol 1.1)")
            assert len(line) == 3 and line[0] == "ready", (line, client.stderr.read() if client.poll() is not None else "")
            prefix, worker_pid = line[1], int(line[2])
            prefixes.append(prefix)
            pidfd = os.pidfd_open(worker_pid)  # pins that process: a reused pid cannot fool the wait
            try:
                if round_ % 2 == 0:
                    time.sleep(rng.uniform(0.0, 1.0))
                    mapped = bool(holders([prefix], [worker_pid]))
                else:  # killed as soon as the mapping is seen: the worker unmaps within milliseconds
                    wait_until(lambda: bool(holders([prefix], [worker_pid])), 20,
                               "the client's worker maps one of its segments")
                    mapped = True
                assert client.poll() is None, client.stderr.read()  # it was still calling
                client.send_signal(signal.SIGKILL)
                mapped_at_kill += mapped
                assert client.wait(timeout=10) == -signal.SIGKILL
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                assert poller.poll(20_000), f"worker pid {worker_pid} still runs 20 s after its client died"
            finally:
                os.close(pidfd)
        finally:
            if client.poll() is None:
                client.kill()
            client.wait(timeout=10)
            client.stdout.close()  # type: ignore[union-attr]
            client.stderr.close()  # type: ignore[union-attr]
        assert_nothing_anywhere([prefix])
    print(f"\n[shm client kills] 4 clients SIGKILLed, {mapped_at_kill} while their worker mapped a segment")
    assert mapped_at_kill >= 2  # the odd rounds at least: killed mid-request
    assert_nothing_anywhere(prefixes)


# -- 16 threads at once -------------------------------------------------------------------------------


def test_16_threads_of_shm_sized_calls_are_exact_and_bounded(worker_command, monkeypatch) -> None:
    prefixes = Prefixes(monkeypatch)
    before = Snapshot.settled()
    failures: List[str] = []
    calls = [0]
    lock = threading.Lock()
    with my_module.Worker(worker_command, timeout=30) as w:
        skip_without_shm(w)

        def load(i: int) -> None:
            rng = random.Random(1600 + i)
            for c in range(4):
                n = 8192 if c == 0 else log_uniform_size(rng, 8192, 500_000)
                numbers = u32s(rng, n) if rng.random() < 0.5 else u32s(rng, n).tolist()
                try:
                    if (i + c) % 2:
                        result = w.submit(numbers).result(timeout=40)
                    else:
                        result = w.calculate_squares(numbers)
                    ok = exact(result, numbers)
                except BaseException as exc:  # any error is a failure here: no fault injected
                    failures.append(f"{n} numbers: {exc!r}")
                    continue
                with lock:
                    calls[0] += 1
                    if not ok:
                        failures.append(f"{n} numbers: a wrong result")

        run_threads(16, load, join_timeout=50)
        assert failures == []
        assert calls[0] == 64
        pool = pool_of(w)
        assert len(prefixes.seen) == 1 and pool.prefix == prefixes.seen[0]  # no worker was lost
        assert 1 <= len(pool._idle) <= pool.max_idle and pool._made >= len(pool._idle)
        wait_until(lambda: only_idle_segments_held(w, prefixes.seen), 10,
                   "the only segments we hold are the pool's idle ones")
        worker_pid = w.pid
        assert worker_pid is not None and holders(prefixes.seen, [worker_pid]) == []  # it unmapped them all
        made = pool._made
    print(f"\n[shm 16 threads] 64 calls exact, {made} segments made, max_idle {pool.max_idle}")
    assert own_memfds(prefixes.seen) == {} and own_mappings(prefixes.seen) == []  # close() freed them
    assert_nothing_anywhere(prefixes.seen)
    assert_no_leaks(before)


# -- cancellation, timeouts, interrupts mid-call -------------------------------------------------------


class Interrupt:
    """``with Interrupt(after):`` raises KeyboardInterrupt in the main thread ``after`` s in."""

    def __init__(self, after: float) -> None:
        self.after = after

    def __enter__(self) -> "Interrupt":
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        self.previous = signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, self.after)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def test_cancelled_timed_out_and_interrupted_shm_calls_free_their_segments(worker_command, monkeypatch) -> None:
    prefixes = Prefixes(monkeypatch)
    before = Snapshot.settled()
    rng = random.Random(44)
    big = u32s(rng, 2_500_000)  # two chunks: two segments per call
    mid = u32s(rng, 300_000)
    seen: Dict[str, int] = {}

    def note(kind: str) -> None:
        seen[kind] = seen.get(kind, 0) + 1

    with my_module.Worker(worker_command) as w:
        skip_without_shm(w)
        assert exact(w.calculate_squares(mid), mid)

        # submit(big).cancel(), at once and a little later
        for delay in (0.0, 0.0, 0.001, 0.005, 0.02, 0.05, 0.1):
            future = w.submit(big, timeout=30)
            if delay:
                time.sleep(delay)
            if future.cancel():
                note("cancelled")
                with pytest.raises(concurrent.futures.CancelledError):
                    future.result(timeout=0)
            else:
                note("finished before cancel")
                assert exact(future.result(timeout=30), big)
            del future

        # timeouts from 1 ms to 50 ms: TimeoutError, unless the call beat it (exact then)
        for timeout in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05):
            for numbers in (big, mid):
                try:
                    result = w.calculate_squares(numbers, timeout=timeout)
                except TimeoutError:
                    note("TimeoutError")
                else:
                    note("finished in time")
                    assert exact(result, numbers)
            try:
                w.submit(big, timeout=timeout).result(timeout=30)
            except TimeoutError:
                note("TimeoutError (submit)")
            else:
                note("finished in time (submit)")

        # KeyboardInterrupt at moments of a big call (a frame cut short kills the worker)
        if sys.version_info >= (3, 10):  # before, a signal can leave a lock held (bpo-29988)
            for after in (0.0005, 0.002, 0.01, 0.03, 0.08, 0.2):
                try:
                    with Interrupt(after):
                        result = w.calculate_squares(big, timeout=30)
                except KeyboardInterrupt:
                    note("interrupted")
                else:
                    note("finished before the interrupt")
                    assert exact(result, big)
                    del result
                assert exact(w.calculate_squares(mid, timeout=30), mid)

        # then: exact follow-up calls, nothing in flight, no segment but the idle ones
        for numbers in (big, mid, big):
            assert exact(w.calculate_squares(numbers, timeout=30), numbers)
        wait_until(lambda: in_flight(w) == 0, 20, "every cancelled request is answered")
        wait_until(lambda: only_idle_segments_held(w, prefixes.seen), 10,
                   "every segment made is idle or closed")
        pool = pool_of(w)
        assert len(pool._idle) <= pool.max_idle
    print(f"\n[shm cancel/timeout/interrupt] {seen}; {len(prefixes.seen)} pools")
    assert seen.get("cancelled", 0) >= 1 and seen.get("TimeoutError", 0) >= 1
    if sys.version_info >= (3, 10):
        assert seen.get("interrupted", 0) >= 1
    assert own_memfds(prefixes.seen) == {} and own_mappings(prefixes.seen) == []
    assert_nothing_anywhere(prefixes.seen)
    assert_no_leaks(before)
