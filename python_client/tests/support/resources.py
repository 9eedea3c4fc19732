"""What a process holds, counted from /proc: threads, child processes, zombies, open fds.

The reliability tests take a :class:`Snapshot` before injecting faults and another after
closing everything, and require that the second holds nothing the first did not (after a
short settle time: a reader thread that is reaping a killed worker needs a moment to finish).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest


def stat_fields(pid: int) -> Optional[List[str]]:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid is [1])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].decode().split()


def children(pid: Optional[int] = None) -> Dict[int, str]:
    """Direct children of ``pid`` (default: this process) -> their state letter (Z: zombie)."""
    parent = str(os.getpid() if pid is None else pid)
    found: Dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(int(entry))
        if fields is not None and fields[1] == parent:
            found[int(entry)] = fields[0]
    return found


def kill_child(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``pid`` only if it is still our live child; True if sent.

    Through a pidfd, so that a pid reaped and reused meanwhile (by anyone's process) can never
    be hit: the pidfd pins the process that was checked.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        fields = stat_fields(pid)
        if fields is None or fields[1] != str(os.getpid()) or fields[0] == "Z":
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def open_fds() -> Dict[int, str]:
    """This process's open file descriptors -> what they point at."""
    found: Dict[int, str] = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            found[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            pass  # the fd listdir itself used, closed meanwhile
    return found


def vm_kib(pid: int, key: str) -> Optional[int]:
    """A ``/proc/<pid>/status`` memory figure in KiB (``VmRSS``, ``VmHWM``), None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class Snapshot:
    threads: int  # threading.active_count(): Python threads
    tasks: int  # /proc/self/task: every OS thread, Python's or not
    thread_names: Tuple[str, ...] = field(compare=False)
    children: Tuple[Tuple[int, str], ...]  # (pid, state) of our child processes
    fds: Tuple[Tuple[int, str], ...]

    @classmethod
    def take(cls) -> "Snapshot":
        return cls(
            threads=threading.active_count(),
            tasks=len(os.listdir("/proc/self/task")),
            thread_names=tuple(sorted(t.name for t in threading.enumerate())),
            children=tuple(sorted(children().items())),
            fds=tuple(sorted(open_fds().items())),
        )

    @classmethod
    def settled(cls, timeout: float = 3.0) -> "Snapshot":
        """A snapshot once two in a row, 100 ms apart, agree (threads of an earlier test may
        still be exiting), or the last one after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        previous = cls.take()
        while True:
            time.sleep(0.1)
            current = cls.take()
            if current == previous or time.monotonic() > deadline:
                return current
            previous = current

    @property
    def zombies(self) -> int:
        return sum(1 for _, state in self.children if state == "Z")

    def summary(self) -> str:
        return (f"{self.threads} threads ({self.tasks} tasks), {len(self.children)} children "
                f"({self.zombies} zombies), {len(self.fds)} fds")

    def extra(self, before: "Snapshot") -> List[str]:
        """What this snapshot holds that ``before`` did not (empty: nothing leaked)."""
        found = []
        if self.threads > before.threads:
            new = sorted(set(self.thread_names) - set(before.thread_names))
            found.append(f"{self.threads - before.threads} more Python threads {new}")
        if self.tasks > before.tasks:
            found.append(f"{self.tasks - before.tasks} more OS threads")
        children = sorted(set(self.children) - set(before.children))
        if children:
            found.append(f"child processes (pid, state) {children}")
        fds = sorted(set(self.fds) - set(before.fds))
        if fds:
            found.append(f"open fds {fds}")
        return found


def assert_no_leaks(before: Snapshot, settle: float = 10.0) -> Snapshot:
    """Wait up to ``settle`` s until the process holds nothing it did not hold at ``before``
    (no extra thread, child process, zombie or fd); fail if it still does."""
    deadline = time.monotonic() + settle
    while True:
        after = Snapshot.take()
        leaked = after.extra(before)
        if not leaked:
            return after
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(
        f"resources leaked (after {settle:g} s to settle):\n  before: {before.summary()}\n"
        f"  after:  {after.summary()}\n  " + "\n  ".join(leaked)
    )
