"""my_module as deployed on a cluster: dask's own scheduler and workers on separate hosts, the
wheel installed on each, the client on a host of its own.

The hosts are network namespaces of this machine (hosts.py: a scheduler host, a client host and
two worker hosts on a bridge, 10.213.0.0/24), each with its own venv made here by pip from the
package index: dask[distributed], numpy and the wheel ``pip wheel ./python_client`` builds. No
editable install, nothing of the checkout on any host's PYTHONPATH or PATH, no Swift on PATH;
the processes are ``dask scheduler`` and ``dask worker tcp://10.213.0.1:8786`` (2 processes x 2
threads per host) from the hosts' venvs, the client is driver.py on the client host, and only
the hosts' own addresses are used. Worker host w1 finds its squares-worker by itself (inside the
package); w2 is configured as docs/scaling-out.md says, ``MY_MODULE_WORKER="<site-packages>/
my_module/bin/squares-worker --parallelism 1"``.

Run by ``make test-hosts`` (in ``make test``), as root: ~1.5-2 min on 2 shared cores once the
worker is built, most of it the four venvs (docs/scaling-out.md has the figures). Every wait
has its own deadline and the run a budget (BUDGET): past it the next wait fails at once; the
teardown has bounds of its own. Skipped, saying why, where it cannot run (not root, no ``ip
netns``). At the end every process, namespace, link and the temporary directory (venvs, logs)
must be gone, whatever failed before: the fixture tears down in a ``finally`` and checks it.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import hosts
from hosts import Driver, Host, Lab

PROCESSES_PER_HOST = 2
THREADS_PER_PROCESS = 2
TOP = 2**32 - 1
BUDGET = 1200  # s, for set-up and tests


class Cluster:
    def __init__(self, lab: Lab, driver: Driver) -> None:
        self.lab = lab
        self.driver = driver

    @property
    def w1(self) -> Host:
        return self.lab.hosts["w1"]

    @property
    def w2(self) -> Host:
        return self.lab.hosts["w2"]

    def whoami(self) -> Dict[str, dict]:
        """Every dask worker process: its address -> what it reports (driver.whoami)."""
        info = self.driver.call("whoami", timeout=120)
        for address, entry in info.items():
            self.lab.watched.add([entry["pid"], entry["squares_worker"]], f"dask process / squares-worker of {address}")
        return info

    def addresses_on(self, host: Host) -> List[str]:
        return sorted(a for a in self.driver.call("workers", timeout=60) if self.lab.host_of(a) is host)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    reason = hosts.unavailable_reason()
    if reason:
        pytest.skip(reason)
    for what in hosts.remove_leftovers_of_dead_runs():
        hosts.log(f"removed the leftover of a run that was killed before its teardown: {what}")
    lab = Lab(worker_roles=("w1", "w2"), budget=BUDGET)
    driver = None
    started = time.monotonic()
    try:
        lab.make_network()
        hosts.log("network made; building the wheel (pip wheel ./python_client)")
        wheel = lab.build_wheel()
        hosts.log(f"{wheel.name} built after {time.monotonic() - started:.0f} s; making a venv per host")
        lab.make_venvs(wheel)
        hosts.log(f"venvs made after {time.monotonic() - started:.0f} s; starting dask")
        w2 = lab.hosts["w2"]
        w2.env_extra["MY_MODULE_WORKER"] = f"{w2.squares_worker} --parallelism 1"
        lab.start_scheduler()
        for host in lab.workers:
            lab.start_workers(host, PROCESSES_PER_HOST, THREADS_PER_PROCESS)
        driver = Driver(lab)
        workers = driver.call("connect", workers=PROCESSES_PER_HOST * len(lab.workers), timeout=180)
        lab.watch_namespaces()
        hosts.log(f"cluster up after {time.monotonic() - started:.0f} s: {workers}")
        yield Cluster(lab, driver)
    finally:
        setup_and_tests = time.monotonic() - started
        failures = []
        if driver is not None:
            try:
                driver.close()
            except Exception as e:  # noqa: BLE001 - the teardown goes on
                failures.append(f"closing the driver: {e!r}")
        try:
            lab.destroy()
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))
        left = lab.leftovers()
        lab.watched.close()
        hosts.log(f"torn down; {setup_and_tests:.0f} s for set-up and tests, "
                  f"{time.monotonic() - started - setup_and_tests:.0f} s for the teardown")
        assert not left, f"the run left behind: {left}"
        assert not failures, f"the teardown failed: {failures}"


def test_client_map_over_lists_gives_the_exact_squares_in_order_from_both_hosts(cluster: Cluster) -> None:
    result = cluster.driver.call("map", count=1_000_000, parts=20, timeout=300)
    assert result["tasks"] == 20
    assert (result["count"], result["mismatches"]) == (1_000_000, []), result
    assert result["last"] == TOP * TOP == 18446744065119617025
    hosts_used = {cluster.lab.host_of(a).role for a in result["by_address"]}
    assert hosts_used == {"w1", "w2"}, f"the tasks ran on {sorted(result['by_address'])} only"
    for address, entry in result["by_address"].items():
        assert len(entry["pids"]) == 1 and len(entry["squares_workers"]) == 1, (address, entry)
    # calculate_squares itself as the task (sent by reference: client and scheduler import my_module).
    assert result["direct"] == [0, 1, 4294967296, 18446744065119617025]


def test_a_dask_array_squared_block_by_block_equals_numpy(cluster: Cluster) -> None:
    # out= inside map_blocks (issue 22): each block's squares written into a uint64 block of its
    # own on the worker hosts, by the wheel installed there.
    result = cluster.driver.call("array", count=2_000_000, chunks=250_000, timeout=300)
    assert (result["dtype"], result["count"], result["blocks"]) == ("uint64", 2_000_000, 8)
    assert result["mismatches"] == [], result
    assert result["first"] == [0, 1, 18446744065119617025] and result["last"] == 18446744065119617025


def test_each_dask_process_on_each_host_runs_its_own_squares_worker_from_that_hosts_venv(cluster: Cluster) -> None:
    info = cluster.whoami()
    lab = cluster.lab
    assert len(info) == PROCESSES_PER_HOST * len(lab.workers), sorted(info)
    squares_workers = []
    for host in lab.workers:
        mine = {a: e for a, e in info.items() if lab.host_of(a) is host}
        assert len(mine) == PROCESSES_PER_HOST, f"{host.role}: dask processes {sorted(mine)}"
        in_namespace = set(hosts.netns_pids(host.netns))
        for address, entry in mine.items():
            pid, worker_pid = entry["pid"], entry["squares_worker"]
            where = f"{host.role} {address} (pid {pid})"
            # The dask process: on this host, Python and my_module from this host's venv, nothing
            # of the checkout on its path, no Swift on its PATH.
            assert pid in in_namespace, f"{where} is not in namespace {host.netns}"
            assert Path(entry["prefix"]) == host.venv, f"{where} runs in {entry['prefix']}"
            assert Path(entry["module"]).parent == host.site_packages / "my_module", f"{where}: {entry['module']}"
            assert not [p for p in entry["sys_path"] if inside_checkout(p)], f"{where}: {entry['sys_path']}"
            assert shutil.which("swift", path=entry["path"]) is None, f"{where}: Swift on its PATH {entry['path']}"
            assert entry["path"].split(os.pathsep)[0] == str(host.venv / "bin")
            # Its squares-worker: its only live child, this host's packaged executable, in this
            # host's namespace; with w2's MY_MODULE_WORKER, the arguments it gives.
            assert hosts.live_children(pid) == [worker_pid], (
                f"{where}: live children {hosts.describe(hosts.live_children(pid))}, squares-worker {worker_pid}")
            assert hosts.exe(worker_pid) == os.path.realpath(host.squares_worker), (
                f"{where}: its squares-worker runs {hosts.exe(worker_pid)}, not {host.squares_worker}")
            assert worker_pid in in_namespace
            expected_args = ["--parallelism", "1"] if host.role == "w2" else []
            assert hosts.cmdline(worker_pid)[1:] == expected_args, hosts.cmdline(worker_pid)
            assert entry["worker_env"] == (host.env_extra.get("MY_MODULE_WORKER"))
            squares_workers.append(worker_pid)
    assert len(set(squares_workers)) == len(squares_workers), "two dask processes share a squares-worker"
    # Nothing of my_module runs on the scheduler or the client host.
    for role in ("sched", "client"):
        for pid in hosts.netns_pids(lab.hosts[role].netns):
            assert os.path.basename(hosts.exe(pid) or "") != "squares-worker", f"a squares-worker on {role}"


def inside_checkout(path: str) -> bool:
    if not path:
        return False
    resolved = Path(path).resolve()
    return resolved == hosts.CHECKOUT or hosts.CHECKOUT in resolved.parents


def pidfd_kill(pid: int, parent: int) -> None:
    """SIGKILL ``pid`` if it is a live child of ``parent`` (through a pidfd: no reused pid); wait
    until it has exited."""
    fd = os.pidfd_open(pid)
    try:
        fields = hosts.stat_fields(pid)
        assert fields is not None and fields[1] == str(parent) and fields[0] != "Z", (
            f"{pid} is not a live child of {parent}: {fields}")
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        assert select.select([fd], [], [], 10)[0], f"{pid} still running 10 s after SIGKILL"
    finally:
        os.close(fd)


def test_a_sigkilled_squares_worker_is_replaced_on_its_host_and_the_task_stays_exact(cluster: Cluster) -> None:
    # The client's own retry: the dask process lives on, dask never hears of it.
    host = cluster.w2
    address = cluster.addresses_on(host)[0]
    (started,) = cluster.driver.call("hold", name="sqkill", count=100_000, addresses=[address], strict=True,
                                     timeout=120)
    pid, killed = started["pid"], started["squares_worker"]
    assert started["address"] == address
    assert hosts.exe(killed) == os.path.realpath(host.squares_worker)
    cluster.lab.watched.add([killed], "the SIGKILLed squares-worker")
    time.sleep(0.5)  # calls in flight on it
    pidfd_kill(killed, parent=pid)
    time.sleep(0.5)  # the loop goes on, on a fresh squares-worker
    result = cluster.driver.call("release", name="sqkill", timeout=120)
    (task,) = result["tasks"]
    assert (result["count"], result["mismatches"]) == (100_000, []), result
    assert task["address"] == address and task["pid"] == pid, f"the task was rescheduled: {task}"
    assert task["looped"] > 0
    replacement = task["squares_worker"]
    assert replacement != killed
    assert hosts.live_children(pid) == [replacement]
    assert hosts.exe(replacement) == os.path.realpath(host.squares_worker)
    assert hosts.cmdline(replacement)[1:] == ["--parallelism", "1"]
    assert replacement in hosts.netns_pids(host.netns)


def test_a_worker_host_killed_mid_job_has_its_tasks_rescheduled_on_the_other_and_exact(cluster: Cluster) -> None:
    lab, victim, survivor = cluster.lab, cluster.w1, cluster.w2
    # One task per task thread of every process, pinned loosely (free to move if its worker
    # dies), each looping on its own slice of 100,000 numbers until released.
    addresses = [a for a in cluster.driver.call("workers", timeout=60) for _ in range(THREADS_PER_PROCESS)]
    started = cluster.driver.call("hold", name="hostkill", count=100_000, addresses=addresses, strict=False,
                                  timeout=120)
    on_victim = [i for i, s in enumerate(started) if lab.host_of(s["address"]) is victim]
    assert on_victim, f"no task started on {victim.role}: {started}"
    cluster.whoami()  # note every process, to check they all exit
    killed = lab.kill_host(victim)
    assert killed and not hosts.netns_pids(victim.netns)
    hosts.log(f"killed host {victim.role}: {len(killed)} processes")
    result = cluster.driver.call("release", name="hostkill", timeout=240)
    assert (result["count"], result["mismatches"]) == (100_000 * len(addresses), []), result
    for i, task in enumerate(result["tasks"]):
        assert lab.host_of(task["address"]) is survivor, f"task {i} ended on {task['address']}"
        if i in on_victim:
            assert task["looped"] == 0, f"task {i} was not rerun: {task}"
    workers = cluster.driver.call("wait_workers", count=PROCESSES_PER_HOST, without=victim.address, timeout=60)
    assert {lab.host_of(a).role for a in workers} == {survivor.role}

    # The host comes back: its new processes start squares-workers of their own, from its venv.
    lab.start_workers(victim, PROCESSES_PER_HOST, THREADS_PER_PROCESS)
    cluster.driver.call("wait_workers", count=PROCESSES_PER_HOST * 2, timeout=180)
    info = cluster.whoami()
    back = [e for a, e in info.items() if lab.host_of(a) is victim]
    assert len(back) == PROCESSES_PER_HOST
    for entry in back:
        assert hosts.live_children(entry["pid"]) == [entry["squares_worker"]]
        assert hosts.exe(entry["squares_worker"]) == os.path.realpath(victim.squares_worker)
        assert entry["squares_worker"] not in killed
