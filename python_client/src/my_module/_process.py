"""The worker process: spawned with three pipes, its stderr drained, killed with a reason, reaped, described."""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any, List, Mapping, Optional, Tuple

from ._errors import WorkerCrashedError

worker_logger = logging.getLogger("my_module.worker")

STDERR_TAIL_LINES = 20  # how many of its last stderr lines a WorkerCrashedError carries
PIPE_BYTES = 1 << 20  # pipe capacity asked for on Linux (default 64 KiB): fewer wake-ups per big frame
_F_SETPIPE_SZ = 1031  # Linux's fcntl command; the fcntl module names it only from Python 3.10
_MAX_STDERR_LINE = 4000  # longer stderr lines come in pieces of this length
_SIGNALS = {s.value: s.name for s in signal.Signals}
_FORGOTTEN: List[Any] = []  # a fork child's copies of its parent's Popen objects, never waited for


def describe_status(returncode: int) -> str:  # "exited with status 3", "was killed by SIGKILL"
    if returncode >= 0:
        return f"exited with status {returncode}"
    return f"was killed by {_SIGNALS.get(-returncode, f'signal {-returncode}')}"


class WorkerProcess:
    """A spawned worker: the connection's writer alone writes stdin, its reader reads stdout and reaps."""

    def __init__(self, argv: Tuple[str, ...], env: Optional[Mapping[str, str]]) -> None:
        # Its own session: a Ctrl-C in the terminal interrupts Python, not the worker, whose life
        # we manage (it also ends when our end of its stdin closes).
        self.argv = argv
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      bufsize=0, env=env, close_fds=True, start_new_session=True)
        self.pid = self.popen.pid
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.stdin_fd, self.stdout_fd = self.popen.stdin.fileno(), self.popen.stdout.fileno()
        os.set_blocking(self.stdin_fd, False)
        for fd in (self.stdin_fd, self.stdout_fd) if sys.platform.startswith("linux") else ():
            with contextlib.suppress(OSError):  # over /proc/sys/fs/pipe-max-size or not permitted: the default stays
                __import__("fcntl").fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
        self.kill_reason = ""  # why my_module killed it, if it did
        self._lock = threading.Lock()
        self._tail: "collections.deque[str]" = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._drain = threading.Thread(target=self._drain_stderr, name=f"my_module-stderr-{self.pid}", daemon=True)
        self._drain.start()

    def kill(self, reason: str) -> None:
        """SIGKILL it, keeping the first ``reason`` ("": it ended by itself, e.g. a write met a closed pipe)."""
        with self._lock:
            self.kill_reason = self.kill_reason or reason
        self.signal(signal.SIGKILL)

    def signal(self, signum: int) -> None:
        # os.kill, not Popen.send_signal(): only the reader thread reaps, so until it has, the pid is ours.
        if self.popen.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signum)

    def reap(self, grace: float) -> int:
        """Wait for its exit (the reader thread, once stdout ended); killed after ``grace`` s."""
        try:
            return self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill(f"it closed its stdout but did not exit within {grace:g} s")
            return self.popen.wait()

    def close_stdout(self, grace: float) -> None:  # the reader thread's, once reaped
        self._drain.join(timeout=grace)  # its last lines belong in the report
        self.popen.stdout.close()  # type: ignore[union-attr]

    def crash_report(self, returncode: int, note: str) -> WorkerCrashedError:
        """What a caller whose request died with it is told: how it ended, why, its last stderr lines."""
        reasons = "; ".join(r for r in (self.kill_reason and f"killed by my_module: {self.kill_reason}", note) if r)
        message = f"worker pid {self.pid} ({self.argv[0]}) {describe_status(returncode)}"
        message += f" ({reasons})" if reasons else ""
        tail = tuple(self._tail)
        message += "; its last stderr lines:\n  " + "\n  ".join(tail) if tail else "; it wrote nothing to stderr"
        return WorkerCrashedError(message, returncode=returncode, stderr_tail=tail, pid=self.pid)

    def forget_after_fork(self) -> None:
        """In a fork child: close our copies of its pipes, with no I/O, and never wait for it."""
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]  # unbuffered (bufsize=0): writes nothing
        _FORGOTTEN.append(self.popen)  # no Popen.__del__ bookkeeping of another process's child

    def _drain_stderr(self) -> None:
        assert self.popen.stderr is not None
        with io.BufferedReader(self.popen.stderr, 1 << 16) as stream:  # type: ignore[type-var]
            with contextlib.suppress(OSError, ValueError):
                for raw in iter(lambda: stream.readline(_MAX_STDERR_LINE), b""):
                    text = raw.rstrip(b"\n").decode("utf-8", "replace").rstrip("\r")
                    self._tail.append(text)  # for the crash report; the log is for whoever asks for DEBUG
                    worker_logger.debug("[pid %d] %s", self.pid, text)
