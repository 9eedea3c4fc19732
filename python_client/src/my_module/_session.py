"""A Worker's checked options and its current connection (spawned on first use, reset in a fork child)."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import threading
import time
import weakref
from typing import Any, Dict, Mapping, Optional, Tuple

from . import _shm
from ._connection import Connection, State, wait
from ._errors import WorkerError
from ._protocol import DEFAULT_MAX_FRAME_BYTES, ENCODING_JSON, ENCODING_PACKED, ENCODING_SHM
from ._requests import Call, Deadlines

ENCODINGS = (ENCODING_SHM, ENCODING_PACKED, ENCODING_JSON)
MIN_FRAME_BYTES = 1024  # room for any request's envelope and one element


@dataclasses.dataclass(frozen=True)
class Options:
    timeout: Optional[float] = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    startup_timeout: Optional[float] = 10.0
    shutdown_timeout: float = 2.0
    retries: int = 1
    chunk_size: Optional[int] = None  # None: the encoding's (_methods.ArrayEncoding.chunk)
    encodings: Tuple[str, ...] = ENCODINGS

    def __post_init__(self) -> None:
        for name in ("timeout", "startup_timeout", "shutdown_timeout"):
            object.__setattr__(self, name, check_timeout(getattr(self, name), name, name != "shutdown_timeout"))
        check_int("max_frame_bytes", self.max_frame_bytes, MIN_FRAME_BYTES)
        check_int("retries", self.retries, 0)
        if self.chunk_size is not None:
            check_int("chunk_size", self.chunk_size, 1)
        names = self.encodings
        if isinstance(names, (str, bytes)) or not isinstance(names, (tuple, list)):
            raise TypeError(f"encodings must be a tuple or list of names among {ENCODINGS}, not {names!r}")
        if not names or any(name not in ENCODINGS for name in names):
            raise ValueError(f"encodings must name one or more of {ENCODINGS}, preferred first, not {names!r}")
        object.__setattr__(self, "encodings", tuple(names))


def check_timeout(value: Any, name: str = "timeout", optional: bool = True) -> Optional[float]:
    """``value`` as seconds: a positive number (``math.inf``: no limit), or None if ``optional``."""
    if value is None and optional:
        return None
    what = f"{name} must be a positive number of seconds{' or None' if optional else ''}, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(what)
    if not float(value) > 0:  # NaN too
        raise ValueError(what)
    return float(value)


def check_int(name: str, value: Any, least: int) -> None:
    what = f"{name} must be an int >= {least}, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(what)
    if value < least:
        raise ValueError(what)


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

    def _reset(self) -> None:  # everything that belongs to one process: rebuilt in a fork child
        self._lock = threading.Lock()
        self.deadlines = Deadlines()
        self._pid = os.getpid()

    def call(self, method: Any, payload: Any, timeout: Optional[float], retries: Optional[int] = None,
             out: Any = None) -> Call:
        """A new call of ``method`` (not sent yet), its result written to ``out`` if given; ``WorkerError`` once closed."""
        if self.closed:
            raise WorkerError("this Worker is closed")
        retries = self.options.retries if retries is None else retries
        return Call(self, method, payload, self.deadline(timeout), retries, out)

    def deadline(self, timeout: Optional[float]) -> Optional[float]:
        """The ``time.monotonic()`` deadline of a call with ``timeout`` (None: the default)."""
        timeout = self.options.timeout if timeout is None else check_timeout(timeout)
        return None if timeout is None or math.isinf(timeout) else time.monotonic() + timeout

    def connection(self, deadline: Optional[float]) -> Connection:
        """The ready connection, spawned if need be; TimeoutError, or the WorkerError that ended its start."""
        if self._pid != os.getpid():
            self.reset_after_fork()  # a fork that skipped os.register_at_fork handlers
        with self._lock:
            if self.closed:
                raise WorkerError("this Worker is closed")
            conn = self._conn
            state = None if conn is None else conn.status()
            if state is State.READY:
                return conn  # type: ignore[return-value]
            if conn is None or state in (State.CLOSING, State.ENDED) or not conn.alive():
                if conn is not None:
                    conn.abandon()  # its start was cut short: if its thread ever runs, it ends
                    _close_pool(conn)
                pool = _shm.Pool() if ENCODING_SHM in self.options.encodings else None  # used if the worker has shm
                conn = self._conn = Connection(self.command, self.env, self.options.max_frame_bytes, pool)
                conn.start()
        startup = self.options.startup_timeout
        startup_deadline = math.inf if startup is None else conn.started_at + startup
        limit = startup_deadline if deadline is None else min(deadline, startup_deadline)
        if not wait(conn.ready, None if math.isinf(limit) else limit - time.monotonic()):
            if time.monotonic() < startup_deadline:
                raise TimeoutError("the worker was still starting")
            conn.kill(f"it did not answer initialize within startup_timeout={startup:g} s")
            raise TimeoutError(f"the worker {self.command[0]!r} did not answer initialize within "
                               f"startup_timeout={startup:g} s, and was killed")
        if conn.status() is State.READY:
            return conn
        if self.closed or conn.error is None:
            raise WorkerError("this Worker is closed")
        raise conn.error

    @property
    def pid(self) -> Optional[int]:
        conn = self._conn
        return None if conn is None or conn.status() is State.ENDED or self._pid != os.getpid() else conn.pid

    def close(self) -> None:
        with self._lock:
            self.closed = True
            conn, self._conn = self._conn, None
        self.deadlines.stop()
        if conn is not None and self._pid == os.getpid():
            conn.close(self.options.shutdown_timeout)
            _close_pool(conn, everything=conn.status() is State.ENDED)

    def abandon(self) -> None:
        """The Worker was dropped unclosed: its worker's input ends, it exits and is reaped (never blocks: GC)."""
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
    if conn.pool is not None:
        conn.pool.close(everything)


def _reset_all_after_fork() -> None:
    for session in list(_sessions):
        session.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
