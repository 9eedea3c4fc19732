"""The same dask job on one and on two worker hosts (network namespaces of this machine, as
test_hosts.py makes them), beside a LocalCluster of the same shape on the client host.

Usage, as root, from the repository root (``make bench-hosts`` builds the worker and the test
venv first)::

    python python_client/hosts_tests/bench_hosts.py [--numbers N] [--parts P] [--rounds R]
                                                     [--threads T] [--direct] [--json FILE]

The job is bench_dask.py's: the top N numbers of the u32 range (default 20,000,000) in P
ranges (default 40), each task returning its squares as one ``array('Q')``, gathered by the
client; ``my_module`` (``calculate_squares``) and pure Python (``x * x``) alternate, R rounds
each (default 5), and the table gives the medians and the spread of the rounds. The clusters,
each in turn on the same lab:

- LocalCluster, 1 and 2 processes x T threads (default 2), started by the client on the client
  host (loopback), from its venv;
- dask's scheduler on its host and ``dask worker --nworkers 1 --nthreads T`` on one worker host,
  then on both (the client on its own host; every message crosses the bridge).

Every host's squares-workers are started as docs/scaling-out.md says,
``MY_MODULE_WORKER="<site-packages>/my_module/bin/squares-worker --parallelism 1"``. All the
hosts share this machine's cores (and the client and the scheduler run beside them): a second
host adds a process, not cores. ~4 min on 2 cores, most of it the venvs and the rounds. The client
gathers the results through the scheduler, dask's default for a client outside the cluster;
``--direct`` gathers them from the workers themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Dict, List

import hosts
from hosts import Driver, Lab


def row(label: str, result: dict, count: int) -> Dict:
    mm, pp = result["median"]["my_module"], result["median"]["pure_python"]
    return {"cluster": label, "my_module_s": mm, "pure_python_s": pp,
            "my_module_mnum_s": count / mm / 1e6, "pure_python_mnum_s": count / pp / 1e6,
            "ratio": pp / mm, "load_average": result["load_average"], "times": result["times"],
            "tasks_by_worker": result["tasks_by_worker"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=20_000_000)
    parser.add_argument("--parts", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--direct", action="store_true",
                        help="on the hosts, gather the results from the workers themselves (Client.gather(direct=True)), "
                             "not through the scheduler (dask's default for a client outside the cluster)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    reason = hosts.unavailable_reason()
    if reason:
        print(f"bench_hosts: cannot run here: {reason}", file=sys.stderr)
        return 2
    for what in hosts.remove_leftovers_of_dead_runs():
        hosts.log(f"removed the leftover of a run that was killed before its teardown: {what}")
    lab = Lab(worker_roles=("w1", "w2"), budget=3600)
    driver = None
    rows: List[Dict] = []
    job = dict(count=args.numbers, parts=args.parts, rounds=args.rounds)
    per_round = 120 + args.numbers / 100_000  # s: generous for one round of both variants
    try:
        lab.make_network()
        wheel = lab.build_wheel()
        lab.make_venvs(wheel)
        for host in lab.hosts.values():
            host.env_extra["MY_MODULE_WORKER"] = f"{host.squares_worker} --parallelism 1"
        lab.start_scheduler()
        driver = Driver(lab)
        driver.call("connect", workers=0, timeout=120)
        t = args.threads
        for processes in (1, 2):
            hosts.log(f"LocalCluster {processes} x {t} on the client host")
            result = driver.call("bench", **job, local_processes=processes, local_threads=t,
                                 timeout=180 + per_round * (args.rounds + 1))
            rows.append(row(f"LocalCluster, {processes} process{'es' if processes > 1 else ''} x {t} threads",
                            result, args.numbers))
        for n, host in enumerate(lab.workers, start=1):
            lab.start_workers(host, 1, t)
            driver.call("wait_workers", count=n, timeout=120)
            label = f"{n} worker host{'s' if n > 1 else ''} x 1 process x {t} threads"
            hosts.log(label)
            result = driver.call("bench", **job, direct=args.direct, timeout=per_round * (args.rounds + 1))
            rows.append(row(label, result, args.numbers))
    finally:
        if driver is not None:
            driver.close()
        lab.destroy()
        left = lab.leftovers()
        lab.watched.close()
        if left:
            print(f"bench_hosts: the run left behind: {left}", file=sys.stderr)

    commit = subprocess.run(["git", "-C", str(hosts.CHECKOUT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"\n{args.numbers:,} numbers in {args.parts} ranges, median of {args.rounds} rounds "
          f"({os.cpu_count()} cores, {platform.machine()}, at {commit}):\n")
    print("| cluster | my_module | pure Python | my_module / pure Python | load average |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        load = f"{min(r['load_average']):.1f}–{max(r['load_average']):.1f}"
        spread = {k: f"{min(v):.2f}–{max(v):.2f}" for k, v in r["times"].items()}
        print(f"| {r['cluster']} | {r['my_module_s']:.2f} s ({r['my_module_mnum_s']:.1f} M/s; {spread['my_module']}) | "
              f"{r['pure_python_s']:.2f} s ({r['pure_python_mnum_s']:.1f} M/s; {spread['pure_python']}) | "
              f"{r['ratio']:.2f} | {load} |")
    print("\n(median; the fastest and slowest round in brackets. Tasks per dask worker: "
          + "; ".join(f"{r['cluster']}: {sorted(r['tasks_by_worker'].values())}" for r in rows) + ")")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "commit": commit, "time": time.time(), "rows": rows}, f, indent=1)
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
