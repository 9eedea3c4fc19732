"""A small lab of hosts on one Linux machine: network namespaces joined by a bridge, each host with
its own venv, running dask's own command-line processes.

Used by ``test_hosts.py`` (``make test-hosts``) and ``bench_hosts.py`` (``make bench-hosts``); needs
root and iproute2 (``ip netns``). The layout, for a lab tagged ``mmhosts<pid>`` (the pid of the
process that made it, so that two runs on one machine never meet, and a crashed run's leftovers
are recognised as such by the next)::

    <tag>-lan     the network: a bridge ``br0`` and one veth end per host; no address
    <tag>-sched   10.213.0.1   eth0   dask scheduler
    <tag>-client  10.213.0.2   eth0   the dask Client (driver.py)
    <tag>-w1      10.213.0.11  eth0   dask worker
    <tag>-w2      10.213.0.12  eth0   dask worker

Every veth pair is made with both ends already in their namespaces, so nothing of the lab ever
appears in the machine's own network namespace, and deleting the namespaces deletes every link.
Every host has its own venv (dask, numpy and the my_module wheel, installed by pip from the
package index), its own HOME and working directory, and an environment made from scratch: PATH
is the venv's bin and the system directories (no Swift), no PYTHONPATH, nothing of the checkout.

Processes are started with ``ip netns exec`` and die with the process that started them
(PR_SET_PDEATHSIG), so a test killed outright leaves no dask process running; its namespaces and
temporary directory are removed by the next run (:func:`remove_leftovers_of_dead_runs`).
``HOSTS_LOG_DIR=DIR`` keeps a copy of the processes' logs (dask's and the driver's) in DIR.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, IO, Iterable, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from resources import children, stat_fields  # noqa: E402  # the client tests' /proc readers

CHECKOUT = Path(__file__).resolve().parents[2]
PROJECT = CHECKOUT / "python_client"
DRIVER = Path(__file__).resolve().with_name("driver.py")

TAG_PREFIX = "mmhosts"
SUBNET = "10.213.0"
SCHEDULER_PORT = 8786
# The test tools every host gets, with the wheel: what the dask processes and the client import.
HOST_REQUIREMENTS = ["dask[distributed]>=2024.1", "numpy>=1.24"]
# The directories a host's PATH has after its venv's bin: the system's, never the checkout's or
# a toolchain's.
SYSTEM_PATH = ["/usr/local/bin", "/usr/bin", "/bin"]
WORKER_IN_PACKAGE = Path("my_module") / "bin" / "squares-worker"


class LabError(RuntimeError):
    """A step of the lab failed; the message carries the command's output or the logs' tails."""


def log(message: str) -> None:
    print(f"[hosts {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- can it run here?


def unavailable_reason() -> Optional[str]:
    """Why a lab cannot be made on this machine (for a skip), or None."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "making network namespaces needs root (run as root, e.g. `sudo make test-hosts`)"
    ip = shutil.which("ip")
    if ip is None:
        return "iproute2's `ip` is not on PATH (apt-get install iproute2)"
    probe = f"{TAG_PREFIX}{os.getpid()}-probe"
    made = subprocess.run([ip, "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        return f"`ip netns add` failed here (no network namespaces?): {made.stderr.strip()}"
    try:
        veth = subprocess.run(
            [ip, "link", "add", "name", "probe-a", "netns", probe, "type", "veth", "peer", "name", "probe-b", "netns", probe],
            capture_output=True, text=True, timeout=30)
        if veth.returncode != 0:
            return f"`ip link add ... type veth` failed here: {veth.stderr.strip()}"
    finally:
        subprocess.run([ip, "netns", "del", probe], capture_output=True, timeout=30)
    return None


# --- commands


def run(argv: Sequence[str], timeout: float, what: str = "", **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion within ``timeout`` s; a failure raises with its output."""
    try:
        done = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{what or argv[0]}: no end after {timeout:.0f} s: {' '.join(map(str, argv))}\n"
                       f"{_text(e.stdout)[-3000:]}{_text(e.stderr)[-3000:]}") from None
    if done.returncode != 0:
        raise LabError(f"{what or argv[0]}: exit {done.returncode}: {' '.join(map(str, argv))}\n"
                       f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}")
    return done


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def ip(*args: str, timeout: float = 30) -> str:
    return run(["ip", *args], timeout=timeout, what="ip").stdout


def netns_names() -> List[str]:
    # `ip netns list` prints "name" or "name (id: N)".
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def netns_pids(name: str) -> List[int]:
    """Pids of the live processes in namespace ``name`` (zombies are in no namespace any more)."""
    done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return []  # the namespace is gone
    return [int(p) for p in done.stdout.split()]


def kill_all_in(name: str, deadline: float) -> List[int]:
    """SIGKILL every process in namespace ``name`` until none is left (a nanny may start another
    between a listing and its kill); returns the pids killed. Raises if some survive ``deadline``."""
    killed: List[int] = []
    while True:
        pids = netns_pids(name)
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise LabError(f"processes still in namespace {name} after SIGKILLs: {describe(pids)}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


# --- /proc


def live_children(pid: int) -> List[int]:
    return sorted(child for child, state in children(pid).items() if state != "Z")


def exe(pid: int) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


def describe(pids: Iterable[int]) -> str:
    return "; ".join(f"{pid} {' '.join(cmdline(pid))[:160]}" for pid in pids)


def processes_touching(directory: Path) -> List[str]:
    """Processes of the whole machine whose executable, working directory or command line is
    under ``directory``: what a run must not leave behind."""
    prefix = str(directory)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        places = [exe(pid) or ""]
        try:
            places.append(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            pass
        places += cmdline(pid)
        if any(p.startswith(prefix) or f"={prefix}" in p for p in places):
            found.append(f"{pid} {' '.join(cmdline(pid))[:160]}")
    return found


class Watched:
    """Processes seen during a run, held as pidfds: a pidfd turns readable once its process has
    exited (whoever reaps it) and never points at a reused pid."""

    def __init__(self) -> None:
        self.fds: Dict[int, int] = {}
        self.what: Dict[int, str] = {}

    def add(self, pids: Iterable[int], what: str) -> None:
        for pid in pids:
            if pid in self.fds:
                continue
            try:
                self.fds[pid] = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            self.what[pid] = what

    def running(self) -> List[str]:
        return [f"{self.what[pid]} {pid}" for pid, fd in self.fds.items() if not select.select([fd], [], [], 0)[0]]

    def wait_all_exited(self, timeout: float) -> List[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = self.running()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# --- the lab


@dataclass
class Host:
    role: str
    address: str
    netns: str
    home: Path
    venv: Optional[Path] = None
    env_extra: Dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        assert self.venv is not None
        return self.venv / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        assert self.venv is not None
        (found,) = self.venv.glob("lib/python3*/site-packages")
        return found

    @property
    def squares_worker(self) -> Path:
        return self.site_packages / WORKER_IN_PACKAGE

    def environment(self) -> Dict[str, str]:
        """The whole environment of this host's processes, made from scratch."""
        assert self.venv is not None
        env = {
            "PATH": os.pathsep.join([str(self.venv / "bin"), *SYSTEM_PATH]),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "VIRTUAL_ENV": str(self.venv),
            # dask's and Python's own files (config, caches) under this host's HOME.
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "TMPDIR": str(self.home / "tmp"),
        }
        env.update(self.env_extra)
        return env


class Lab:
    """Namespaces, venvs and processes of one run; :meth:`destroy` removes them all and
    :meth:`leftovers` says what is left (nothing, when all went well)."""

    def __init__(self, worker_roles: Sequence[str] = ("w1", "w2"), budget: float = 1200) -> None:
        # Every wait of the run is bounded by its own timeout and by this budget: past it, the
        # next wait fails at once (the teardown has a bound of its own).
        self.budget = budget
        self.deadline = time.monotonic() + budget
        self.tag = f"{TAG_PREFIX}{os.getpid()}"
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.hosts: Dict[str, Host] = {}
        roles = [("sched", f"{SUBNET}.1"), ("client", f"{SUBNET}.2")]
        roles += [(role, f"{SUBNET}.{11 + i}") for i, role in enumerate(worker_roles)]
        for role, address in roles:
            home = self.root / "hosts" / role
            (home / "tmp").mkdir(parents=True)
            self.hosts[role] = Host(role, address, f"{self.tag}-{role}", home)
        self.lan = f"{self.tag}-lan"
        self.processes: Dict[str, subprocess.Popen] = {}
        self.logs: Dict[str, Path] = {}
        self.watched = Watched()
        self.made_netns: List[str] = []

    def bounded(self, timeout: float) -> float:
        """``timeout``, or what is left of the run's budget if that is less."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise LabError(f"the run's time budget of {self.budget:.0f} s is spent")
        return min(timeout, left)

    @property
    def workers(self) -> List[Host]:
        return [h for role, h in self.hosts.items() if role not in ("sched", "client")]

    @property
    def scheduler_address(self) -> str:
        return f"tcp://{self.hosts['sched'].address}:{SCHEDULER_PORT}"

    def host_of(self, address: str) -> Host:
        """The host of a dask address (``tcp://10.213.0.11:40123``)."""
        ip_part = address.split("://", 1)[-1].rsplit(":", 1)[0]
        for host in self.hosts.values():
            if host.address == ip_part:
                return host
        raise LabError(f"{address} is no address of the lab's hosts")

    # --- network

    def make_network(self) -> None:
        self._add_netns(self.lan)
        ip("-n", self.lan, "link", "add", "br0", "type", "bridge")
        ip("-n", self.lan, "link", "set", "br0", "up")
        for host in self.hosts.values():
            self._add_netns(host.netns)
            port = f"p-{host.role}"
            ip("link", "add", "name", "eth0", "netns", host.netns, "type", "veth", "peer", "name", port, "netns", self.lan)
            ip("-n", self.lan, "link", "set", port, "master", "br0")
            ip("-n", self.lan, "link", "set", port, "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self.made_netns.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    # --- software

    def build_wheel(self, python: str = sys.executable) -> Path:
        """``pip wheel ./python_client``: the wheel a user builds, with its squares-worker."""
        out = self.root / "wheelhouse"
        run([python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", out, PROJECT],
            timeout=self.bounded(900), what="pip wheel", cwd=self.root, env=clean_environment())
        (wheel,) = out.glob("my_module-*.whl")
        return wheel

    def make_venvs(self, wheel: Path, python: str = sys.executable) -> None:
        """A venv per host, from the package index (pip's download cache shared): the first host
        resolves the requirements, the others get the same versions (``pip freeze`` as
        constraints), so every host runs the same dask, as dask requires."""
        constraints = self.root / "constraints.txt"
        for host in self.hosts.values():
            venv = self.root / "venvs" / host.role
            run([python, "-m", "venv", venv], timeout=self.bounded(120), what=f"venv for {host.role}", env=clean_environment())
            host.venv = venv
            install = [host.python, "-m", "pip", "install", "--quiet", *HOST_REQUIREMENTS, wheel]
            if constraints.exists():
                install += ["--constraint", constraints]
            run(install, timeout=self.bounded(300), what=f"pip install on {host.role}", cwd=host.home, env=clean_environment())
            if not constraints.exists():
                frozen = run([host.python, "-m", "pip", "freeze", "--exclude", "my_module"], timeout=self.bounded(60),
                             what="pip freeze", env=clean_environment()).stdout
                constraints.write_text(frozen)

    # --- processes

    def start(self, name: str, host: Host, argv: Sequence[str], stdin=subprocess.DEVNULL,
              stdout: Optional[int] = None) -> subprocess.Popen:
        """Start ``argv`` on ``host`` (``ip netns exec``, the host's environment and HOME as
        working directory); its output goes to a log file unless ``stdout`` is given."""
        if name in self.processes and self.processes[name].poll() is None:
            raise LabError(f"{name} is running already")
        logfile = self.root / "logs" / f"{name}.log"
        logfile.parent.mkdir(exist_ok=True)
        self.logs[name] = logfile
        with open(logfile, "ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, *map(str, argv)],
                stdin=stdin, stdout=out if stdout is None else stdout, stderr=out,
                cwd=host.home, env=host.environment(), preexec_fn=_die_with_parent)
        self.processes[name] = process
        self.watched.add([process.pid], name)
        return process

    def start_scheduler(self) -> None:
        host = self.hosts["sched"]
        self.start("scheduler", host, [host.venv / "bin" / "dask", "scheduler", "--host", host.address,
                                       "--port", SCHEDULER_PORT, "--no-dashboard"])
        self.wait_for_log("scheduler", "Scheduler at:", timeout=90)

    def start_workers(self, host: Host, nworkers: int, nthreads: int) -> None:
        """``dask worker tcp://<scheduler>`` on ``host``: ``nworkers`` processes (each under its
        nanny) of ``nthreads`` task threads."""
        self.start(f"workers-{host.role}", host, [
            host.venv / "bin" / "dask", "worker", self.scheduler_address, "--host", host.address,
            "--nworkers", nworkers, "--nthreads", nthreads, "--name", host.role, "--no-dashboard",
            "--local-directory", host.home / "dask-scratch", "--death-timeout", "60",
        ])

    def wait_for_log(self, name: str, text: str, timeout: float) -> None:
        timeout = self.bounded(timeout)
        deadline = time.monotonic() + timeout
        while text not in self.logs[name].read_text(errors="replace"):
            if self.processes[name].poll() is not None:
                raise LabError(f"{name} exited ({self.processes[name].returncode}) before {text!r}:\n"
                               f"{self.tail(name)}")
            if time.monotonic() > deadline:
                raise LabError(f"{name}: no {text!r} in its log after {timeout:.0f} s:\n{self.tail(name)}")
            time.sleep(0.1)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return f"(no log of {name})"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"  {name}| {line}" for line in text)

    def all_tails(self, lines: int = 25) -> str:
        return "\n".join(self.tail(name, lines) for name in self.logs)

    def kill_host(self, host: Host, timeout: float = 30) -> List[int]:
        """SIGKILL every process of ``host`` (its whole namespace): a host gone at once."""
        self.watch_namespaces()
        killed = kill_all_in(host.netns, time.monotonic() + timeout)
        for name, process in self.processes.items():
            if name.endswith(f"-{host.role}") and process.poll() is None:
                process.wait(timeout=timeout)
        return killed

    def watch_namespaces(self) -> None:
        """Note every process now in the lab's namespaces (teardown checks they all exited)."""
        for name in self.made_netns:
            self.watched.add(netns_pids(name), f"process in {name}")

    # --- teardown

    def destroy(self, timeout: float = 60) -> None:
        """Kill every process in the lab's namespaces, reap the ones this process started,
        delete the namespaces (and so every link) and the temporary directory. Best effort on
        every step; the first error is raised at the end, after all steps ran."""
        started = time.monotonic()
        deadline = started + timeout
        errors: List[str] = []
        try:
            self.watch_namespaces()
        except Exception as e:  # noqa: BLE001 - go on with the rest of the teardown
            errors.append(f"listing processes: {e}")
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    process.kill()
                except ProcessLookupError:
                    pass
        for name in list(self.made_netns):
            try:
                kill_all_in(name, deadline)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
        log(f"teardown: processes killed in {time.monotonic() - started:.1f} s")
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                errors.append(f"{name} (pid {process.pid}) did not exit")
        log(f"teardown: processes reaped after {time.monotonic() - started:.1f} s")
        for name in list(self.made_netns):
            done = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                self.made_netns.remove(name)
            else:
                errors.append(f"ip netns del {name}: {done.stderr.strip()}")
        log(f"teardown: namespaces deleted after {time.monotonic() - started:.1f} s")
        keep = os.environ.get("HOSTS_LOG_DIR")
        if keep and (self.root / "logs").is_dir():
            shutil.copytree(self.root / "logs", Path(keep) / self.tag, dirs_exist_ok=True)
            log(f"the processes' logs are in {Path(keep) / self.tag}")
        shutil.rmtree(self.root, ignore_errors=True)
        log(f"teardown: {self.root} removed after {time.monotonic() - started:.1f} s")
        if errors:
            raise LabError("teardown: " + "; ".join(errors))

    def leftovers(self, timeout: float = 30) -> List[str]:
        """What this run left on the machine: namespaces, links, processes, files. Empty when
        the teardown was complete."""
        found = []
        left = self.watched.wait_all_exited(timeout)
        found += [f"process still running: {p}" for p in left]
        found += [f"process using {self.root}: {p}" for p in processes_touching(self.root)]
        found += [f"namespace {n}" for n in netns_names() if n.startswith(self.tag + "-")]
        # Links of the machine's own namespace: none was ever made there, but a veth end left
        # behind would show its name (p-<role>) or its peer's namespace (link-netns <tag>-...).
        found += [f"link {line.strip()}" for line in ip("-o", "link", "show").splitlines()
                  if re.search(rf"\bp-(sched|client|w\d+)\b|{self.tag}-", line)]
        if self.root.exists():
            found.append(f"temporary directory {self.root}")
        return found


def clean_environment() -> Dict[str, str]:
    """The test process's environment for pip and venv, less what would lead them to the
    checkout or to this test's own venv."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "MY_MODULE_WORKER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env


def remove_leftovers_of_dead_runs() -> List[str]:
    """Namespaces (with their processes) and temporary directories of labs whose process is
    gone (a run killed before its teardown); returns what was removed."""
    removed = []
    for name in netns_names():
        m = re.fullmatch(rf"{TAG_PREFIX}(\d+)-\w+", name)
        if m and not _alive(int(m.group(1))):
            kill_all_in(name, time.monotonic() + 30)
            ip("netns", "del", name)
            removed.append(f"namespace {name}")
    for path in Path(tempfile.gettempdir()).glob(f"{TAG_PREFIX}*-*"):
        m = re.match(rf"{TAG_PREFIX}(\d+)-", path.name)
        if m and path.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"directory {path}")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the client host


class Driver:
    """driver.py on the client host: a dask Client the test drives over JSON lines (its stdin
    and a pipe of its own for the replies; its stderr, dask's logs included, goes to its log)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        host = lab.hosts["client"]
        # driver.py is copied onto the host: it runs from the host's HOME, nothing of the checkout
        # on its path.
        script = host.home / "driver.py"
        shutil.copy(DRIVER, script)
        self.process = lab.start("driver", host, [host.python, script, lab.scheduler_address],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        self.stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        self._buffer = b""

    def call(self, op: str, timeout: float, **args) -> dict:
        """Send one command; its reply within ``timeout`` s, or a LabError with the logs. The
        driver's own waits get a little less, so that they fail first and say what they waited
        for."""
        timeout = self.lab.bounded(timeout)
        args["timeout"] = max(1.0, timeout * 0.9 - 5)
        try:
            self.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
            self.stdin.flush()
        except BrokenPipeError:
            raise LabError(f"the driver is gone (exit {self.process.poll()}):\n{self.lab.all_tails()}") from None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"driver: no reply to {op!r} within {timeout:.0f} s:\n{self.lab.all_tails()}")
            ready, _, _ = select.select([self.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise LabError(f"driver exited ({self.process.wait(timeout=10)}) during {op!r}:\n"
                                   f"{self.lab.all_tails()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply = json.loads(line)
        if not reply.get("ok"):
            raise LabError(f"driver: {op!r} failed:\n{reply.get('error')}\n{self.lab.all_tails(15)}")
        return reply["result"]

    def close(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            try:
                self.call("quit", timeout=timeout)
            except (LabError, OSError):
                self.process.kill()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        for pipe in (self.stdin, self.stdout):
            try:
                pipe.close()
            except OSError:
                pass
