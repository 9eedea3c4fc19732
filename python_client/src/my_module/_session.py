"""A Worker's options and its current connection: spawned on first use, the handshake
awaited, reset in a fork child; calls are made here."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
import weakref
from typing import Any, Dict, Mapping, Optional, Tuple

from ._connection import Connection, State, release_if_owned
from ._errors import WorkerError
from . import _shm
from ._protocol import DEFAULT_MAX_FRAME_BYTES, ENCODING_JSON, ENCODING_PACKED, ENCODING_SHM
from ._requests import Call, Deadlines


@dataclasses.dataclass(frozen=True)
class Options:
    timeout: Optional[float] = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    startup_timeout: float = 10.0
    shutdown_timeout: float = 2.0
    retries: int = 1
    chunk_size: Optional[int] = None  # None: the encoding's (_methods.ArrayEncoding.chunk)
    encodings: Tuple[str, ...] = (ENCODING_SHM, ENCODING_PACKED, ENCODING_JSON)

    def __post_init__(self) -> None:
        for name in ("timeout", "startup_timeout", "shutdown_timeout"):
            object.__setattr__(self, name, check_timeout(getattr(self, name), name))
        if self.max_frame_bytes < 1024:
            raise ValueError(f"max_frame_bytes must be at least 1024, not {self.max_frame_bytes!r}")
        if self.retries < 0 or (self.chunk_size is not None and self.chunk_size < 1):
            raise ValueError(f"retries must be >= 0 and chunk_size >= 1, not {self.retries!r}, {self.chunk_size!r}")
        if set(self.encodings) - {ENCODING_SHM, ENCODING_PACKED, ENCODING_JSON} or not self.encodings:
            raise ValueError(f"encodings must name some of 'shm', 'packed', 'json': {self.encodings!r}")


def check_timeout(timeout: Any, name: str = "timeout") -> Optional[float]:
    if timeout is None:
        return None
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be None or a number >= 0, not {timeout!r}")
    return value


_sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()


class Session:
    """The live side of a Worker (which its finalizer may hold: it never refers to the Worker)."""

    def __init__(self, command: Tuple[str, ...], env: Optional[Mapping[str, str]], options: Options) -> None:
        self.command = command
        self.env: Optional[Dict[str, str]] = None if env is None else dict(env)
        self.options = options
        self.closed = False
        self._conn: Optional[Connection] = None
        self._reset()
        _sessions.add(self)

    def _reset(self) -> None:
        # Everything that belongs to one process: rebuilt in a fork child.
        self._spawn_lock = threading.RLock()  # taken by hand: see _connection.release_if_owned
        self.deadlines = Deadlines()
        self._pid = os.getpid()

    def call(self, method: Any, payload: Any, timeout: Optional[float], retries: Optional[int] = None) -> Call:
        """A new call of ``method`` (not sent yet); raises ``WorkerError`` once closed."""
        if self.closed:
            raise WorkerError("this Worker is closed")
        return Call(self, method, payload, self.deadline(timeout), self.options.retries if retries is None else retries)

    def deadline(self, timeout: Optional[float]) -> Optional[float]:
        """The ``time.monotonic()`` deadline of a call with ``timeout`` (None: the default)."""
        timeout = self.options.timeout if timeout is None else check_timeout(timeout)
        return None if timeout is None or math.isinf(timeout) else time.monotonic() + timeout

    def connection(self, deadline: Optional[float]) -> Connection:
        """The running, initialized connection, spawning a worker if there is none. Raises
        ``TimeoutError``, or the ``WorkerError`` that ended its start (not found, crashed...)."""
        conn = self._conn
        if conn is not None and conn.state is State.READY and self._pid == os.getpid():
            return conn
        if self._pid != os.getpid():
            self.reset_after_fork()  # a fork that skipped os.register_at_fork handlers
        try:
            if not self._spawn_lock.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
                raise TimeoutError("timed out waiting for another thread to start the worker")
            if self.closed:
                raise WorkerError("this Worker is closed")
            conn = self._conn
            if conn is None or conn.state in (State.CLOSING, State.ENDED) or not conn.alive():
                if conn is not None:
                    conn.abandon()  # its start was cut short: if its thread ever runs, it ends
                    _close_pool(conn)
                conn = Connection(self.command, self.env, self.options.max_frame_bytes)
                if ENCODING_SHM in self.options.encodings:  # offered; used if the worker lists shm too
                    pool = conn.plans[_shm.Pool] = _shm.Pool()
                    conn.init_params = {"shmPrefix": pool.prefix}
                self._conn = conn  # before it starts: close() finds whatever was started
                conn.start()
        finally:
            release_if_owned(self._spawn_lock)
        startup_deadline = conn.started_at + self.options.startup_timeout
        limit = startup_deadline if deadline is None else min(deadline, startup_deadline)
        if not conn.wait_ready(limit - time.monotonic()):
            if time.monotonic() < startup_deadline:
                raise TimeoutError("timed out waiting for the worker to start")
            reason = f"it did not answer initialize within {self.options.startup_timeout:g} s"
            conn.kill(reason)
            raise TimeoutError(f"the worker {reason}")
        if conn.state is State.READY:
            return conn
        if self.closed or conn.error is None:
            raise WorkerError("this Worker is closed")
        raise conn.error

    @property
    def pid(self) -> Optional[int]:
        conn = self._conn
        return None if conn is None or conn.state is State.ENDED or self._pid != os.getpid() else conn.pid

    def close(self) -> None:
        with self._spawn_lock:
            self.closed = True
            conn, self._conn = self._conn, None
        self.deadlines.stop()
        if conn is not None and self._pid == os.getpid():
            conn.close(self.options.shutdown_timeout)
            _close_pool(conn, everything=conn.state is State.ENDED)

    def abandon(self) -> None:
        """The Worker was dropped without ``close()``: end of input lets the worker finish and
        exit, its connection reaps it. Never blocks (it may run in GC)."""
        self.deadlines.stop()
        conn = self._conn
        if conn is not None and self._pid == os.getpid():
            conn.abandon()

    def reset_after_fork(self) -> None:
        """In a fork child: forget the parent's worker process; the next call starts our own."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.forget_after_fork()
        self._reset()


def _close_pool(conn: Connection, everything: bool = False) -> None:  # see _shm.Pool.close
    pool = conn.plans.get(_shm.Pool)
    if pool is not None:
        pool.close(everything)


def _reset_all_after_fork() -> None:
    for session in list(_sessions):
        session.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
