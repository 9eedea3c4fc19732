"""One spawned worker process and the threads that serve it.

* Writing: any thread, holding the one writer lock for a whole frame (frames never
  interleave). ``$/cancel`` notifications never wait for that lock: they are queued and
  written by whoever holds it next, or right away if it is free and the pipe has room.
* Reading: whoever holds the read token reads frames from stdout and hands each reply to the
  owner registered under its request id (any order). A caller waiting for a one-frame call
  takes the token if it is free and reads its own reply (no thread hand-off: a small call
  costs one round trip, as with a single-threaded client); otherwise, and for everything
  else (big chunked calls, ``submit``, the end of the process), the reader thread reads. A
  token holder that leaves with replies still expected wakes the reader thread. Garbage on
  stdout is a ``ProtocolError``: the process is killed.
* stderr: one thread drains it all the time (the worker can never block on a full stderr
  pipe) into the ``my_module.worker`` logger, keeping the last lines for crash reports.
* End: when stdout ends, the reader reaps the process, builds the error (crash, protocol
  error, closed) and hands every request still in flight to its owner's ``on_lost``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Protocol, Tuple, Union

from ._errors import ProtocolError, WorkerCrashedError, WorkerError, WorkerNotFoundError
from ._framing import (
    FrameReader,
    OversizedFrameError,
    ReadTimeout,
    TruncatedFrameError,
    WriteStalled,
    WriteTimeout,
    try_write_small_frame,
    write_frame,
)
from ._calls import cancel_frame, check_error_object, request_frame
from ._convert import loads_reply
from ._protocol import DEFAULT_MAX_FRAME_BYTES, ENCODING_JSON, JSONRPC_VERSION, PROTOCOL_MAJOR, Method

logger = logging.getLogger(__name__)
worker_logger = logging.getLogger("my_module.worker")

STDERR_TAIL_LINES = 20
"""How many of the worker's last stderr lines a WorkerCrashedError carries."""

WRITE_STALL_GRACE = 1.0
"""Seconds a frame already half-written may wait past its deadline with no progress at all
before the worker is presumed hung and killed (a half-written frame cannot be taken back)."""

REAP_GRACE = 2.0
"""Seconds to wait for a worker to exit after its stdout ended, before killing it."""

PIPE_BYTES = 1 << 20
"""Pipe capacity asked for on Linux (the default is 64 KiB); see benchmarks/README.md."""

_MAX_STDERR_LINE = 4000
_LEVEL_WORDS = re.compile(r"\b(trace|debug|info|notice|warning|warn|error|critical)\b", re.I)
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_on_reader_thread = threading.local()


def on_reader_thread() -> bool:
    """True on a reader thread, i.e. inside a Future callback run by one."""
    return getattr(_on_reader_thread, "value", False)


class Owner(Protocol):
    """Whoever sent a request and wants its reply."""

    def on_result(self, index: int, result: Any) -> None: ...

    def on_error(self, index: int, error: Dict[str, Any]) -> None: ...

    def on_lost(self, conn: Connection, error: WorkerError) -> None: ...


class ConnectionBroken(Exception):
    """Writing failed: the worker is gone or was killed. Its reader will report why."""


class ConnectionRefused(Exception):
    """The connection no longer takes requests (dead or closing)."""


class Handshake:
    """The ``initialize`` request: its Future holds the result once the version is checked."""

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[Dict[str, Any]] = concurrent.futures.Future()
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES  # what the worker announced, once known
        self.encodings: Tuple[str, ...] = (ENCODING_JSON,)
        self.ok = False  # the worker answered and its version is fine (future has the result)

    def on_result(self, index: int, result: Any) -> None:
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        try:
            major = int(str(version).split(".")[0])
        except ValueError:
            major = None
        if major is None:
            raise ProtocolError(f"worker answered initialize without a protocolVersion: {result!r:.200}")
        if major != PROTOCOL_MAJOR:
            raise ProtocolError(
                f"worker speaks protocol {version}; this client speaks {PROTOCOL_MAJOR}.x"
            )
        limits = result.get("limits")
        value = limits.get("maxFrameBytes") if isinstance(limits, dict) else None
        if type(value) is int and value > 0:
            self.max_frame_bytes = value
        encodings = result.get("encodings")
        if isinstance(encodings, list) and all(isinstance(e, str) for e in encodings):
            self.encodings = tuple(encodings)
        self.future.set_result(result)
        self.ok = True

    def on_error(self, index: int, error: Dict[str, Any]) -> None:
        raise ProtocolError(f"worker refused initialize: {error}")

    def on_lost(self, conn: Connection, error: WorkerError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class Connection:
    """A running worker process: spawn, send frames, dispatch replies, stop."""

    def __init__(
        self,
        argv: Tuple[str, ...],
        env: Optional[Mapping[str, str]],
        max_frame_bytes: int,
        on_lost: Callable[[Connection, WorkerError, List[Tuple[Owner, int]]], None],
    ) -> None:
        self.argv = argv
        self._env = env
        self.max_frame_bytes = max_frame_bytes
        self._on_lost = on_lost
        self._lock = threading.Lock()  # guards the fields below
        self._write_lock = threading.Lock()  # the one writer lock: held for a whole frame
        self._pending: Dict[int, Tuple[Owner, int]] = {}
        self._cancel_backlog: Deque[bytes] = collections.deque()
        self._next_id = 0
        self.dead = False  # no more requests; set with .error once the process is reaped
        self.closing = False
        self.error: Optional[WorkerError] = None
        self._kill_reason: Optional[str] = None
        self._stdin_closed = False
        self._orphan: Optional[Tuple[Owner, int]] = None
        self._delivering: Optional[Tuple[Owner, int]] = None  # a reply being handed over
        # Reading stdout: the thread holding the token (None: nobody) is the only one reading.
        self._token: Optional[int] = None
        # Wakes the reader thread: a held lock, released to signal (one C call, so a
        # KeyboardInterrupt landing on the signalling thread cannot leave it half done, as it
        # can a threading.Condition's notify); sticky until the thread takes it.
        self._reader_signal = threading.Lock()
        self._reader_signal.acquire()
        self._reader_wanted = False  # the reader thread should take the token when it is free
        self._read_to_end = False  # read until EOF, replies expected or not (exit, kill, close)
        # How reading ended, when a caller holding the token saw it: the reader thread reaps.
        self._read_end: Optional[Tuple[Optional[WorkerError], str]] = None
        self._stderr_tail: Deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.handshake = Handshake()
        self.started_at = time.monotonic()
        self.pid: Optional[int] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the worker, start the reader and stderr threads, send ``initialize``.

        Raises ``WorkerNotFoundError`` if the executable cannot be started.
        """
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                env=self._env,
                close_fds=True,
                # Its own session: a Ctrl-C in the terminal interrupts Python, not the worker,
                # whose life we manage (it also ends when our end of its stdin closes).
                start_new_session=True,
            )
        except OSError as exc:
            raise WorkerNotFoundError(f"cannot start worker {self.argv[0]!r}: {exc}") from exc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self.pid = proc.pid
        self._stdin_fd = proc.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        _enlarge_pipe(self._stdin_fd)
        _enlarge_pipe(proc.stdout.fileno())
        self._frames = FrameReader(proc.stdout.fileno(), self.max_frame_bytes)
        logger.debug("started worker pid %d: %s", proc.pid, " ".join(self.argv))
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, name=f"my_module-stderr-{proc.pid}", daemon=True
        )
        self._reader_thread = threading.Thread(
            target=self._read_loop, name=f"my_module-reader-{proc.pid}", daemon=True
        )
        self._stderr_thread.start()
        self._reader_thread.start()
        rid = self.new_id()
        self.register(rid, self.handshake, 0)
        try:
            self.send(request_frame(rid, Method.INITIALIZE.value, {}), None)
        except ConnectionBroken:
            pass  # it died at once; the reader reports the crash to the handshake

    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def register(
        self, rid: int, owner: Owner, index: int, *, force: bool = False, self_read: bool = False
    ) -> None:
        """Expect a reply to request ``rid``; raises ``ConnectionRefused`` if dead/closing.

        ``self_read``: the caller will call :meth:`serve_until` for it right after sending it;
        otherwise the reader thread is woken to read it.
        """
        with self._lock:
            if self.dead or (self.closing and not force):
                raise ConnectionRefused()
            self._pending[rid] = (owner, index)
            if not self_read and not self._reader_wanted:
                self._reader_wanted = True
                self._signal_reader()

    def unregister(self, rid: int) -> None:
        with self._lock:
            self._pending.pop(rid, None)

    def in_flight(self) -> int:
        """Number of requests sent and not yet answered."""
        with self._lock:
            return len(self._pending)

    def refusal_error(self) -> WorkerError:
        """Why :meth:`register` refuses (once dead or closing)."""
        with self._lock:
            if self.error is not None:
                return self.error
        return WorkerError("the worker was closed")

    @property
    def peer_max_frame_bytes(self) -> int:
        """The frame limit the worker announced in ``initialize`` (after the handshake)."""
        return self.handshake.max_frame_bytes

    @property
    def peer_encodings(self) -> Tuple[str, ...]:
        """The encodings of ``numbers`` the worker announced (``json`` if it named none)."""
        return self.handshake.encodings

    def abandon(self) -> None:
        """Close the worker's stdin if no one is writing (never blocks): it then finishes
        what it has, exits, and the reader thread reaps it."""
        self._close_stdin(timeout=0)

    def kill(self, reason: str) -> None:
        """SIGKILL the worker; its reader then reports the end with ``reason``."""
        with self._lock:
            if self._kill_reason is None:
                self._kill_reason = reason
            self._want_end_locked()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            # os.kill, not proc.kill(): Popen.kill() polls under a lock taken by hand, which a
            # KeyboardInterrupt landing on the main thread can leave held (the reaping wait()
            # would then hang). The process is reaped only by the reader thread, so until then
            # its pid cannot be reused.
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    # -- writing --------------------------------------------------------------------------------

    def send(self, frame: bytes, deadline: Optional[float]) -> None:
        """Write one whole frame under the writer lock.

        Raises ``WriteTimeout`` if the deadline passes before any byte is written (nothing
        was sent), ``ConnectionBroken`` if the worker is gone (or was just killed because it
        stopped reading in the middle of the frame).
        """
        if deadline is None:
            self._write_lock.acquire()
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._write_lock.acquire(timeout=remaining):
                raise WriteTimeout("timed out waiting for the writer lock")
        try:
            if self._stdin_closed:
                raise ConnectionBroken("the worker's stdin is closed")
            if self._cancel_backlog:
                self._drain_cancels_locked()
            write_frame(self._stdin_fd, frame, deadline, WRITE_STALL_GRACE, self.wake_reader)
        except WriteStalled as exc:
            self.kill(str(exc))
            raise ConnectionBroken(str(exc)) from exc
        except OSError as exc:
            self.kill(f"writing to it failed: {exc}")
            raise ConnectionBroken(str(exc)) from exc
        finally:
            self._write_lock.release()
        self._flush_cancels_nowait()

    def post_cancel(self, rids: List[int]) -> None:
        """Send ``$/cancel`` for ``rids`` without ever blocking (safe on any thread)."""
        with self._lock:
            if self.dead:
                return
            self._cancel_backlog.extend(cancel_frame(rid) for rid in rids)
        self._flush_cancels_nowait()

    def _flush_cancels_nowait(self) -> None:
        # If the writer lock is busy, its holder drains the backlog after its frame; it checks
        # again after releasing the lock, so a cancel queued meanwhile is never stranded.
        while self._cancel_backlog and self._write_lock.acquire(blocking=False):
            try:
                drained = self._drain_cancels_locked()
            finally:
                self._write_lock.release()
            if not drained:
                return  # pipe full: the next writer flushes them

    def _drain_cancels_locked(self) -> bool:
        """Write queued cancels while the pipe has room; True if the backlog is empty."""
        while True:
            with self._lock:
                if not self._cancel_backlog:
                    return True
                frame = self._cancel_backlog.popleft()
            try:
                written = not self._stdin_closed and try_write_small_frame(self._stdin_fd, frame)
            except OSError:
                return True  # the worker is gone; nothing left to cancel
            if not written:
                with self._lock:
                    self._cancel_backlog.appendleft(frame)
                return False

    def _close_stdin(self, timeout: float) -> None:
        # Only with the writer lock: closing an fd another thread is writing to could make
        # that write land on whatever file reuses the number.
        if not self._write_lock.acquire(timeout=timeout):
            return
        try:
            if not self._stdin_closed:
                self._stdin_closed = True
                assert self._proc is not None and self._proc.stdin is not None
                self._proc.stdin.close()
        finally:
            self._write_lock.release()

    # -- reading (reader thread) ----------------------------------------------------------------

    def wake_reader(self) -> None:
        """Wake the reader thread to read (a write must wait: the worker may be waiting for its
        replies to be read before it reads more)."""
        with self._lock:
            if not self._reader_wanted:
                self._reader_wanted = True
                self._signal_reader()

    def _signal_reader(self) -> None:
        try:
            self._reader_signal.release()
        except RuntimeError:
            pass  # already signalled

    def _want_end_locked(self) -> None:
        self._read_to_end = True
        self._signal_reader()

    def serve_until(self, owner_done: Callable[[], bool], deadline: Optional[float]) -> None:
        """Read and dispatch replies on this thread until ``owner_done()`` or ``deadline``
        passes, if the read token is free; return at once if someone else is reading (they
        hand the caller its reply). The caller then waits for its reply as usual."""
        me = threading.get_ident()
        end: Optional[Tuple[Optional[WorkerError], str]] = None
        # A Ctrl-C lands on the main thread between any two bytecodes. While it waits for the
        # pipe that costs nothing; once bytes may have been taken from the pipe or the buffer
        # (``critical``), the stream's state is not known any more: the worker is killed and
        # its calls are retried on a fresh one. Everything below is in the try, so that the
        # token is given back whenever an exception lands.
        critical = False
        try:
            with self._lock:
                if self._token is not None or self._read_end is not None or self.dead:
                    return
                self._token = me
            frames = self._frames
            main = me == threading.main_thread().ident
            _on_reader_thread.value = True
            critical = True
            while not owner_done():
                body = frames.take()
                if body is None:
                    critical = False
                    if not frames.wait(deadline, poll=main):  # blocks outside the critical part
                        break
                    critical = True
                    if not frames.fill():
                        end = (None, "")
                        break
                    continue
                self._dispatch(body)
                if self._cancel_backlog:
                    self._flush_cancels_nowait()  # queued while the pipe was full
            critical = False
        except (ReadTimeout, TruncatedFrameError, OversizedFrameError, ProtocolError, OSError, ValueError) as exc:
            end = self._read_error(exc)
        except Exception as exc:  # a bug; never leave callers waiting forever
            logger.exception("my_module failed while reading a reply")
            end = (ProtocolError(f"internal error while reading a reply: {exc!r}"), "")
        except BaseException:
            if critical and self._token == me:
                end = (None, "the client was interrupted while reading a reply")
                self.kill("the client was interrupted while reading a reply")
            raise
        finally:
            _on_reader_thread.value = False
            if self._token == me:
                with self._lock:
                    self._token = None
                    if end is not None and self._read_end is None:
                        self._read_end = end
                    if self._pending:
                        self._reader_wanted = True  # replies still expected: the thread reads
                    if self._read_end is not None or self._reader_wanted or self._read_to_end:
                        self._signal_reader()

    def _read_error(self, exc: BaseException) -> Tuple[Optional[WorkerError], str]:
        """How reading ends after ``exc``: (the protocol error, or None for a crash; a note)."""
        if isinstance(exc, TruncatedFrameError):
            return None, str(exc)
        if isinstance(exc, OversizedFrameError):
            return ProtocolError(f"worker wrote garbage on stdout: {exc}"), ""
        if isinstance(exc, ProtocolError):
            return exc, ""
        return None, f"reading its stdout failed: {exc}"

    def _read_loop(self) -> None:
        """The reader thread: reads whenever replies are expected and no caller is reading
        them, and at the end reaps the process and tells the owners of what was in flight."""
        _on_reader_thread.value = True
        me = threading.get_ident()
        end: Optional[Tuple[Optional[WorkerError], str]] = None
        lock = self._lock
        while end is None:
            with lock:
                idle = self._token is not None or not (
                    self._read_end is not None or self._reader_wanted or self._read_to_end
                )
                if not idle:
                    if self._read_end is not None:
                        end = self._read_end
                        break
                    self._reader_wanted = False
                    self._token = me
            if idle:
                self._reader_signal.acquire()  # until signalled (maybe already: then at once)
                continue
            try:
                while True:
                    with lock:
                        if not self._pending and not self._read_to_end:
                            self._token = None
                            break
                    body = self._frames.read(None)
                    if body is None:
                        end = (None, "")
                        break
                    self._dispatch(body)
                    if self._cancel_backlog:
                        # Cancels queued while the pipe was full: a reply means the worker made
                        # progress and may have room again; an idle client has no other writer.
                        self._flush_cancels_nowait()
            except (TruncatedFrameError, OversizedFrameError, ProtocolError, OSError, ValueError) as exc:
                end = self._read_error(exc)
            except BaseException as exc:  # a bug; never leave callers waiting forever
                logger.exception("my_module reader thread failed")
                end = (ProtocolError(f"internal error in the reader thread: {exc!r}"), "")
        self._finish(*end)

    def _dispatch(self, body: Union[bytes, bytearray]) -> None:
        try:
            message = loads_reply(body)
        except ValueError as exc:
            raise ProtocolError(
                f"worker wrote a frame that is not JSON ({exc}): {bytes(body[:80])!r}"
            ) from None
        if type(message) is not dict or message.get("jsonrpc") != JSONRPC_VERSION:
            raise ProtocolError(f"worker wrote something that is not a JSON-RPC reply: {bytes(body[:120])!r}")
        rid = message.get("id")
        if "method" in message and "id" not in message:
            logger.debug("ignoring notification from the worker: %.200r", message)
            return
        if type(rid) is not int:
            if rid is None and "error" in message:
                raise ProtocolError(
                    f"worker reported an error it could not tie to a request: {message['error']}"
                )
            raise ProtocolError(f"worker replied with an id this client never uses: {rid!r:.80}")
        with self._lock:
            entry = self._pending.pop(rid, None)
            self._delivering = entry
        if entry is None:
            raise ProtocolError(f"worker replied to request {rid}, which is not in flight")
        owner, index = entry
        try:
            if "error" in message and "result" not in message:
                owner.on_error(index, check_error_object(message["error"]))
            elif "result" in message and "error" not in message:
                owner.on_result(index, message["result"])
            else:
                raise ProtocolError(
                    f"reply to request {rid} must hold exactly one of result and error"
                )
        except ProtocolError:
            self._orphan = entry  # _finish must still tell this owner
            raise
        self._delivering = None

    def _finish(self, error: Optional[WorkerError], note: str) -> None:
        """The reader is done: reap the process, decide the error, tell the owners."""
        proc = self._proc
        assert proc is not None
        if error is not None:
            logger.error("worker pid %d broke the protocol: %s", proc.pid, error)
            self.kill(f"it broke the protocol: {error}")
        try:
            returncode = proc.wait(timeout=REAP_GRACE)
        except subprocess.TimeoutExpired:
            self.kill(f"it closed its stdout but did not exit within {REAP_GRACE:g} s")
            returncode = proc.wait()
        self._stderr_thread.join(timeout=REAP_GRACE)  # its last lines belong in the report
        with self._lock:
            if error is None:
                if self.closing:
                    error = WorkerError("the worker was closed before it answered")
                else:
                    error = self._crash_error(returncode, note)
            self.error = error
            self.dead = True
            lost = list(self._pending.values())
            self._pending.clear()
            self._cancel_backlog.clear()
        if self._orphan is not None:
            lost.append(self._orphan)
        elif self._delivering is not None:  # its delivery was interrupted (see serve_until)
            lost.append(self._delivering)
        if not self.closing:
            level = logging.ERROR if isinstance(error, ProtocolError) else logging.WARNING
            logger.log(level, "worker pid %d ended with %d request(s) in flight: %s",
                       proc.pid, len(lost), error)
        assert proc.stdout is not None
        proc.stdout.close()
        self._close_stdin(timeout=REAP_GRACE)
        self._on_lost(self, error, lost)

    def _crash_error(self, returncode: int, note: str) -> WorkerCrashedError:
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            status = f"was killed by {name}"
        else:
            status = f"exited with status {returncode}"
        reasons = [r for r in (self._kill_reason and f"killed by my_module: {self._kill_reason}", note) if r]
        tail = tuple(self._stderr_tail)
        message = f"worker pid {self.pid} ({self.argv[0]}) {status}"
        if reasons:
            message += " (" + "; ".join(reasons) + ")"
        message += (
            "; its last stderr lines:\n  " + "\n  ".join(tail) if tail else "; it wrote nothing to stderr"
        )
        return WorkerCrashedError(message, returncode=returncode, stderr_tail=tail, pid=self.pid)

    # -- stderr (stderr thread) -----------------------------------------------------------------

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        stream = self._proc.stderr
        pid = self._proc.pid
        partial = b""
        while True:
            try:
                chunk = stream.read(1 << 16)
            except (OSError, ValueError):
                break
            if not chunk:
                break
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            if len(partial) > _MAX_STDERR_LINE:
                lines.append(partial)
                partial = b""
            for line in lines:
                self._stderr_line(pid, line)
        if partial:
            self._stderr_line(pid, partial)
        stream.close()
        with self._lock:  # the worker is gone or going: read its stdout to the end, and reap
            self._want_end_locked()

    def _stderr_line(self, pid: int, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if len(text) > _MAX_STDERR_LINE:
            text = text[:_MAX_STDERR_LINE] + "..."
        self._stderr_tail.append(text)
        match = _LEVEL_WORDS.search(text, 0, 80)
        level = _LEVELS[match.group(1).lower()] if match else logging.INFO
        if worker_logger.isEnabledFor(level):
            worker_logger.log(level, "[pid %d] %s", pid, text)

    # -- orderly end ----------------------------------------------------------------------------

    def close(self, grace: float) -> None:
        """Send ``shutdown``, close stdin and reap the process; escalate to SIGTERM, then
        SIGKILL, if it has not exited after ``grace`` seconds each. Never raises."""
        proc = self._proc
        with self._lock:
            self.closing = True
            dead = self.dead
            self._want_end_locked()
        if proc is None:
            return
        if not dead:
            rid = self.new_id()
            try:
                self.register(rid, _Ignored(), 0, force=True)
                self.send(request_frame(rid, Method.SHUTDOWN.value), time.monotonic() + grace)
            except (ConnectionRefused, ConnectionBroken, WriteTimeout):
                pass
            self._close_stdin(timeout=grace)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            logger.warning("worker pid %d ignored shutdown; sending SIGTERM", proc.pid)
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %d ignored SIGTERM; killing it", proc.pid)
                self.kill("it ignored shutdown and SIGTERM")
                proc.wait()
        if proc.returncode not in (0, None):
            logger.debug("worker pid %d exited with %s after close", proc.pid, proc.returncode)
        if threading.current_thread() is not self._reader_thread:
            self._reader_thread.join(timeout=grace + REAP_GRACE)
        self._stderr_thread.join(timeout=grace)

    def forget_after_fork(self) -> None:
        """In a fork child: drop this parent's connection without any I/O on its pipes.

        Closes only the child's copies of the pipe descriptors (the parent's stay open and
        untouched), and never waits for a process that is not the child's.
        """
        proc = self._proc
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()  # unbuffered (bufsize=0): closing writes nothing
            except OSError:
                pass
        _FORGOTTEN.append(proc)  # no Popen.__del__ bookkeeping of another process's child


_FORGOTTEN: List[Any] = []


class _Ignored:
    """Owner of a request whose reply does not matter (``shutdown``)."""

    def on_result(self, index: int, result: Any) -> None:
        pass

    def on_error(self, index: int, error: Dict[str, Any]) -> None:
        pass

    def on_lost(self, conn: Connection, error: WorkerError) -> None:
        pass


def _enlarge_pipe(fd: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    import fcntl

    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size or not permitted: keep the default
