"""One worker process and its pipes: an explicit :class:`State`, one writer lock, one table
of pending requests by id, one read loop. A frame is whole on the pipe or the worker is
killed; start-up and the end run on the connection's own thread, so an interrupt there
leaks nothing."""

from __future__ import annotations

import collections
import enum
import io
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

from . import _jsonrpc
from ._errors import ProtocolError, WorkerCrashedError, WorkerError, WorkerNotFoundError
from ._framing import (
    FrameReader,
    OversizedFrameError,
    TruncatedFrameError,
    WriteStalled,
    WriteTimeout,
    frame_header,
    try_write_small_frame,
    write_frame,
)
from ._methods import INITIALIZE, RAW_MEMBER, SHUTDOWN
from ._protocol import DEFAULT_MAX_FRAME_BYTES, ENCODING_JSON, PROTOCOL_MAJOR

logger = logging.getLogger(__name__)
worker_logger = logging.getLogger("my_module.worker")

STDERR_TAIL_LINES = 20  # how many of its last stderr lines a WorkerCrashedError carries
# Seconds a frame already half-written may wait past its deadline with no progress at all
# before the worker is presumed hung and killed (a half-written frame cannot be taken back).
WRITE_STALL_GRACE = 1.0
REAP_GRACE = 2.0  # seconds a worker has to exit after its stdout ended, before it is killed
PIPE_BYTES = 1 << 20  # pipe capacity asked for on Linux (default 64 KiB); benchmarks/README.md

_MAX_STDERR_LINE = 4000
_LEVEL_WORDS = re.compile(r"\b(trace|debug|info|notice|warning|warn|error|critical)\b", re.I)
_LEVELS = {"trace": 10, "debug": 10, "info": 20, "notice": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}

_reading = threading.local()


def on_reader_thread() -> bool:
    """True while this thread delivers replies (e.g. inside a Future callback run by it)."""
    return getattr(_reading, "value", False)


class State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    CLOSING = "closing"
    ENDED = "ended"


class Owner(Protocol):
    """Whoever sent a request and wants its outcome (called on the reading thread)."""

    def on_reply(self, request: Request, is_error: bool, payload: Any) -> None: ...

    def on_lost(self, request: Request, error: WorkerError) -> None: ...


class Request:
    """One wire request: its id, its owner (and the owner's ``tag``), how far it got out."""

    __slots__ = ("rid", "owner", "tag", "sent", "writing", "withdrawn")

    def __init__(self, rid: int, owner: Owner, tag: Any = None) -> None:
        self.rid, self.owner, self.tag = rid, owner, tag
        self.sent = self.writing = self.withdrawn = False  # wholly written; taken by a writer; given up


class ConnectionBroken(Exception):
    """Writing failed: the worker is gone or was killed. The connection ends with why."""


class ConnectionRefused(Exception):
    """The connection takes no more requests (ending or ended)."""


class Connection:
    """A worker process: started on its own thread, requests in, replies out, then an end."""

    def __init__(self, argv: Tuple[str, ...], env: Optional[Mapping[str, str]], max_frame_bytes: int) -> None:
        self.argv = argv
        self._env = env
        self.max_frame_bytes = max_frame_bytes
        self.state = State.NEW
        self.error: Optional[WorkerError] = None  # why it ended (once ENDED)
        self.info: Dict[str, Any] = {}  # the initialize result (once READY)
        self.init_params: Dict[str, Any] = {}  # what initialize offers (set before start())
        self.peer_max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.peer_encodings: Tuple[str, ...] = (ENCODING_JSON,)
        self.plans: Dict[Any, Any] = {}  # a call's notes per method on this connection (_requests)
        self.pid: Optional[int] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._lock = threading.Lock()  # guards state, the table and the flags below
        # An RLock for its _is_owned(): a lock taken by hand (with a timeout) is released in a
        # finally whatever lands between the acquire and the try (a KeyboardInterrupt can).
        self._write_lock = threading.RLock()
        self._pending: Dict[int, Request] = {}
        self._ids = itertools.count(1)
        self._cancels: Deque[bytes] = collections.deque()
        self._token: Optional[int] = None  # the thread reading stdout
        self._signal = _Signal()  # wakes the connection's thread
        self._wanted = False  # replies are expected that no caller is reading
        self._to_end = False  # read until EOF (closing, killed, stderr ended)
        self._read_end: Optional[Tuple[Optional[WorkerError], str]] = None  # seen by a caller
        self._delivering: Optional[Request] = None  # taken off the table, delivery not finished
        self._kill_reason: Optional[str] = None
        self._quiet = False  # ended by close() or abandon(): nothing to warn about
        self._stdin_closed = self._dirty = False  # _dirty: a frame is partly written
        self._ready = threading.Event()  # handshake answered, or the connection ended
        self._spawned = threading.Event()  # the spawn was tried
        self._stderr_tail: Deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="my_module-reader", daemon=True)
        self._launched = False

    def __repr__(self) -> str:
        return f"<Connection pid={self.pid} {self.state.value} pending={len(self._pending)}>"

    # -- life -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the connection's thread, which spawns the worker and says ``initialize``."""
        self._launched = True
        self._thread.start()

    def wait_ready(self, timeout: Optional[float]) -> bool:
        """Wait until the handshake is answered or the connection ended; False on timeout."""
        return self._ready.wait(timeout)

    def alive(self) -> bool:
        """False for a connection whose start was cut short before its thread ran."""
        return self.state is not State.NEW or self._thread.is_alive()

    def _run(self) -> None:
        _reading.value = True
        end: Tuple[Optional[WorkerError], str] = (None, "")
        try:
            if not self._spawn():
                return
            rid = next(self._ids)
            try:
                self.send(Request(rid, self, INITIALIZE), [_jsonrpc.request(rid, INITIALIZE.name, self.init_params)], None, force=True)
            except ConnectionBroken:
                pass  # it died at once: reading tells why
            end = self._reader_loop()
        except BaseException as exc:  # a bug: never leave callers waiting
            logger.exception("my_module reader thread failed")
            end = (ProtocolError(f"internal error in the reader thread: {exc!r}"), "")
        self._finish(*end)

    def _spawn(self) -> bool:
        try:
            if self.state in (State.CLOSING, State.ENDED):  # closed before its thread ran
                raise WorkerError("the worker was closed")
            # Its own session: a Ctrl-C in the terminal interrupts Python, not the worker,
            # whose life we manage (it also ends when our end of its stdin closes).
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    bufsize=0, env=self._env, close_fds=True, start_new_session=True)
        except (OSError, WorkerError) as exc:
            self._end(exc if isinstance(exc, WorkerError) else
                      WorkerNotFoundError(f"cannot start worker {self.argv[0]!r}: {exc}"))
            self._spawned.set()
            return False
        assert proc.stdin is not None and proc.stdout is not None
        self._stdin_fd = proc.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        _enlarge_pipe(self._stdin_fd)
        _enlarge_pipe(proc.stdout.fileno())
        self._frames = FrameReader(proc.stdout.fileno(), self.max_frame_bytes)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, args=(proc,),
                                               name=f"my_module-stderr-{proc.pid}", daemon=True)
        self._stderr_thread.start()
        with self._lock:
            self._proc, self.pid = proc, proc.pid
            if self.state is State.NEW:
                self.state = State.STARTING
            closing = self.state is State.CLOSING
        if closing:  # closed or abandoned while it was spawned: it ends at end of input
            self._close_stdin(timeout=REAP_GRACE)
        self._thread.name = f"my_module-reader-{proc.pid}"
        logger.debug("started worker pid %d: %s", proc.pid, " ".join(self.argv))
        self._spawned.set()
        return True

    def on_reply(self, request: Request, is_error: bool, result: Any) -> None:
        """The connection's own requests: ``initialize`` (the handshake) and ``shutdown``."""
        if request.tag is not INITIALIZE:
            return
        if is_error:
            raise ProtocolError(f"worker refused initialize: {result}")
        try:
            version = result["protocolVersion"]
            major = int(str(version).split(".")[0])
        except (TypeError, KeyError, ValueError):
            raise ProtocolError(f"worker answered initialize without a protocolVersion: {result!r:.200}") from None
        if major != PROTOCOL_MAJOR:
            raise ProtocolError(f"worker speaks protocol {version}; this client speaks {PROTOCOL_MAJOR}.x")
        limits = result.get("limits")
        value = limits.get("maxFrameBytes") if isinstance(limits, dict) else None
        if type(value) is int and value > 0:
            self.peer_max_frame_bytes = value
        encodings = result.get("encodings")
        if isinstance(encodings, list) and all(isinstance(e, str) for e in encodings):
            self.peer_encodings = tuple(encodings)
        self.info = result
        with self._lock:
            if self.state is State.STARTING:
                self.state = State.READY
        self._ready.set()

    def on_lost(self, request: Request, error: WorkerError) -> None:
        pass  # the end opens _ready; its error says why

    def kill(self, reason: str, *, asked: bool = False) -> None:
        """SIGKILL the worker; the connection then ends with ``reason`` in its error. ``asked``:
        the caller's own interrupt made the kill necessary, so its end is no crash to warn about."""
        with self._lock:
            self._kill_reason = self._kill_reason or reason
            self._quiet = self._quiet or asked
            self._want_end_locked()
            proc = self._proc
        if proc is not None and proc.returncode is None:
            # os.kill, not proc.kill(): Popen.kill() polls under a lock taken by hand, which a
            # KeyboardInterrupt can leave held. Only this connection's thread reaps, so until
            # then the pid cannot be reused.
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def close(self, grace: float) -> None:
        """Send ``shutdown``, close stdin and reap the process, escalating to SIGTERM then
        SIGKILL after ``grace`` seconds each; join the threads. Never raises."""
        self._stop(State.CLOSING)
        if not self._launched or not self._spawned.wait(grace + REAP_GRACE if self._thread.is_alive() else 0.2):
            self._end(WorkerError("the worker was closed"))  # its thread, if it ever runs, ends at once
            return
        proc = self._proc
        if proc is not None:
            rid = next(self._ids)
            try:
                self.send(Request(rid, self), [_jsonrpc.request(rid, SHUTDOWN.name)], time.monotonic() + grace, force=True)
            except (ConnectionRefused, ConnectionBroken, WriteTimeout):
                pass
            self._close_stdin(timeout=grace)
            for step in ("shutdown", "SIGTERM", "SIGKILL"):
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    if step == "shutdown":
                        logger.warning("worker pid %d ignored shutdown; sending SIGTERM", proc.pid)
                        proc.terminate()
                    elif step == "SIGTERM":
                        logger.warning("worker pid %d ignored SIGTERM; killing it", proc.pid)
                        self.kill("it ignored shutdown and SIGTERM")
        if threading.current_thread() is not self._thread and self._thread.ident is not None:
            self._thread.join(timeout=grace + 2 * REAP_GRACE)

    def abandon(self) -> None:
        """Close the worker's stdin if no one is writing (never blocks): it finishes what it
        has and exits; the connection's thread reaps it. Quietly: nothing went wrong."""
        self._stop(State.CLOSING if self.state is not State.ENDED else State.ENDED)
        if self._proc is not None:
            self._close_stdin(timeout=0)

    def _stop(self, state: State) -> None:
        with self._lock:
            self._quiet = True
            if self.state is not State.ENDED:
                self.state = state
            self._want_end_locked()
        self._ready.set()

    def forget_after_fork(self) -> None:
        """In a fork child: drop the parent's connection without any I/O on its pipes."""
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

    # -- the table --------------------------------------------------------------------------------

    def new_id(self) -> int:
        return next(self._ids)

    def withdraw(self, request: Request) -> None:
        """The owner gave up on ``request``: never written, it is forgotten; written, the
        worker is asked to cancel it (its late reply is read and dropped)."""
        with self._lock:
            request.withdrawn = True
            if request.sent:
                self._cancel_locked(request)
            elif not request.writing:
                self._pending.pop(request.rid, None)
        self._flush_cancels()

    def _cancel_locked(self, request: Request) -> None:
        if self.state is not State.ENDED:
            body = _jsonrpc.cancel(request.rid)
            self._cancels.append(frame_header(len(body)) + body)
            self._want_read_locked()  # its late reply must be read, maybe by no one else

    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    def refusal(self) -> WorkerError:
        """Why :meth:`send` refuses new requests."""
        return self.error or WorkerError("the worker was closed")

    # -- writing ----------------------------------------------------------------------------------

    def send(self, request: Request, body: Sequence[bytes], deadline: Optional[float], *,
             self_read: bool = False, force: bool = False) -> bool:
        """Expect a reply to ``request`` (``self_read``: its caller reads it, else the
        connection's thread is woken) and write ``body`` (buffers) as one frame. False if
        ``request`` was withdrawn (nothing written). Raises ``ConnectionRefused`` once ending
        (``force``: unless ended), ``WriteTimeout`` (nothing written) or ``ConnectionBroken``;
        any other exception while the frame is partly written kills the worker."""
        with self._lock:
            if self.state is not State.READY and not (force and self.state is not State.ENDED):
                raise ConnectionRefused()
            self._pending[request.rid] = request
            if not self_read:
                self._want_read_locked()
        try:
            wait = -1 if deadline is None else deadline - time.monotonic()
            if not (wait >= 0 or deadline is None) or not self._write_lock.acquire(timeout=wait):
                raise WriteTimeout("timed out waiting for the writer lock")
            # No lock: ``writing`` is set before ``withdrawn`` is read, and withdraw() does the
            # converse, so at least one of the two sees the other (the GIL orders them).
            request.writing = True
            if request.withdrawn:
                self._pending.pop(request.rid, None)
                return False
            if self._stdin_closed:
                raise ConnectionBroken("the worker's stdin is closed")
            if self._cancels:
                self._flush_cancels()
            self._dirty = True
            write_frame(self._stdin_fd, [frame_header(sum(map(len, body))), *body], deadline,
                        WRITE_STALL_GRACE, self.wake_reader)
            request.sent = True
            self._dirty = False
        except (WriteStalled, OSError) as exc:
            self.kill(str(exc) if isinstance(exc, WriteStalled) else f"writing to it failed: {exc}")
            raise ConnectionBroken(str(exc)) from exc
        except BaseException as exc:  # WriteTimeout (nothing written), or an interrupt anywhere
            if self._dirty and not isinstance(exc, WriteTimeout):
                self.kill("the client was interrupted while writing a request", asked=True)
            else:
                self._dirty = False
                with self._lock:
                    self._pending.pop(request.rid, None)
            raise
        finally:
            release_if_owned(self._write_lock)
        # Read without the lock: withdraw() sets ``withdrawn`` before it reads ``sent``, so one
        # of the two sees the other's write and queues the cancel.
        if request.withdrawn:
            with self._lock:
                self._cancel_locked(request)
        if self._cancels:
            self._flush_cancels()
        return True

    def _flush_cancels(self) -> None:
        """Write queued cancels while the pipe has room, never blocking. A busy writer lock's
        holder flushes after its frame (re-entering the RLock), and checks again after it
        released the lock, so a cancel queued meanwhile is never stranded."""
        while self._cancels:
            try:
                if not self._write_lock.acquire(blocking=False):
                    return
                while self._cancels:
                    frame = self._cancels.popleft()
                    try:
                        written = not self._stdin_closed and try_write_small_frame(self._stdin_fd, frame)
                    except OSError:
                        self._cancels.clear()  # the worker is gone: nothing left to cancel
                        return
                    if not written:
                        self._cancels.appendleft(frame)
                        return  # pipe full: the next writer flushes them
            finally:
                release_if_owned(self._write_lock)

    def _close_stdin(self, timeout: float) -> None:
        # Only with the writer lock: closing an fd another thread is writing to could make
        # that write land on whatever file reuses the number.
        try:
            if self._write_lock.acquire(timeout=timeout) and not self._stdin_closed and self._proc is not None:
                self._stdin_closed = True
                assert self._proc.stdin is not None
                self._proc.stdin.close()
        finally:
            release_if_owned(self._write_lock)

    # -- reading ----------------------------------------------------------------------------------

    def wake_reader(self) -> None:
        """Have the connection's thread read (a caller stopped reading, or a writer waits for
        room: the worker may be waiting for its replies to be read before it reads more)."""
        with self._lock:
            self._want_read_locked()

    def _want_read_locked(self) -> None:
        if not self._wanted:
            self._wanted = True
            self._signal.set()

    def _want_end_locked(self) -> None:
        self._to_end = True
        self._signal.set()

    def serve(self, done: Callable[[], bool], deadline: Optional[float]) -> None:
        """Read and deliver replies on this thread until ``done()`` or the deadline, if no one
        else is reading (else return at once: the reader delivers the caller's reply)."""
        me = threading.get_ident()
        end = None
        try:
            with self._lock:
                if self._token is not None:
                    # The holder delivers our reply, unless it is just leaving: then the
                    # connection's thread must read it.
                    self._want_read_locked()
                    return
                if self._read_end is not None or self.state is State.ENDED:
                    return
                self._token = me
            end = self._read(done, deadline, True)
        finally:
            with self._lock:
                if self._token == me:
                    self._token = None
                    if end is not None and self._read_end is None:
                        self._read_end = end
                    if self._pending:
                        self._wanted = True  # replies still expected: the connection's thread reads
                    if self._read_end is not None or self._wanted or self._to_end:
                        self._signal.set()

    def _reader_loop(self) -> Tuple[Optional[WorkerError], str]:
        """The connection's thread: read whenever replies are expected and no caller reads."""
        me = threading.get_ident()
        while True:
            with self._lock:
                if self._read_end is not None:
                    return self._read_end
                go = self._token is None and (self._wanted or self._to_end)
                if go:
                    self._wanted, self._token = False, me
            if not go:
                self._signal.wait()
                continue
            end = self._read(lambda: not self._pending and not self._to_end, None, False)
            with self._lock:
                self._token = None
                if end is not None:  # recorded with the token given back: no one reads on
                    self._read_end = self._read_end or end
                    return self._read_end

    def _read(self, done: Callable[[], bool], deadline: Optional[float], poll: bool) -> Optional[Tuple[Optional[WorkerError], str]]:
        """The read loop, for the token holder: deliver frames until ``done()`` or the
        deadline (then None); else return how reading ended (an error, or None; a note).
        ``poll``: wait for the pipe before reading it (a caller's thread)."""
        # A Ctrl-C lands between any two bytecodes: while waiting for the pipe that costs
        # nothing; once bytes may have been taken from it (``critical``) the stream's state is
        # unknown, so the worker is killed and its calls are retried.
        frames = self._frames
        critical = False
        reading = getattr(_reading, "value", False)
        try:
            _reading.value = critical = True
            while not done():
                body = frames.take()
                if body is None:
                    critical = False
                    if not frames.wait(deadline, poll=poll):
                        return None
                    critical = True
                    if not frames.fill():
                        return (None, "")
                    continue
                self._deliver(body)
                if self._cancels:
                    self._flush_cancels()  # queued while the pipe was full
            critical = False
            return None
        except (TruncatedFrameError, OSError) as exc:
            return None, str(exc) if isinstance(exc, TruncatedFrameError) else f"reading its stdout failed: {exc}"
        except (OversizedFrameError, ProtocolError) as exc:
            return exc if isinstance(exc, ProtocolError) else ProtocolError(f"worker wrote garbage on stdout: {exc}"), ""
        except Exception as exc:  # a bug; never leave callers waiting forever
            logger.exception("my_module failed while reading a reply")
            return (ProtocolError(f"internal error while reading a reply: {exc!r}"), "")
        except BaseException:
            if critical:
                self.kill("the client was interrupted while reading a reply", asked=True)
                with self._lock:
                    self._read_end = self._read_end or (None, "the client was interrupted while reading a reply")
            raise
        finally:
            _reading.value = reading

    def _deliver(self, body: Union[bytes, bytearray]) -> None:
        reply = _jsonrpc.parse_reply(body, RAW_MEMBER)
        if reply is None:
            return  # a notification from the worker: nothing asked for it
        rid, is_error, payload = reply
        with self._lock:
            request = self._delivering = self._pending.pop(rid, None)
        if request is None:
            raise ProtocolError(f"worker replied to request {rid}, which is not in flight")
        try:
            request.owner.on_reply(request, is_error, payload)
        except ProtocolError:
            raise  # the worker broke the contract: the connection ends (and fails this one)
        except Exception as exc:  # a bug while delivering: that request fails, not the others
            logger.exception("my_module failed to deliver a reply")
            request.owner.on_lost(request, WorkerError(f"internal error while delivering a reply: {exc!r}"))
        self._delivering = None

    def _end(self, error: WorkerError) -> List[Request]:
        with self._lock:
            self.error = error
            self.state = State.ENDED
            lost = list(self._pending.values())
            self._pending.clear()
            self._cancels.clear()
        self._ready.set()
        return lost

    def _finish(self, error: Optional[WorkerError], note: str) -> None:
        """Reading is over: reap the process, decide the error, fail what is pending."""
        proc = self._proc
        if proc is None:  # closed before it was spawned
            for request in self._end(self.refusal()):
                request.owner.on_lost(request, self.refusal())
            return
        if error is not None:
            logger.error("worker pid %d broke the protocol: %s", proc.pid, error)
            self.kill(f"it broke the protocol: {error}")
        try:
            returncode = proc.wait(timeout=REAP_GRACE)
        except subprocess.TimeoutExpired:
            self.kill(f"it closed its stdout but did not exit within {REAP_GRACE:g} s")
            returncode = proc.wait()
        self._stderr_thread.join(timeout=REAP_GRACE)  # its last lines belong in the report
        if error is None:
            closing = self.state is State.CLOSING
            error = WorkerError("the worker was closed before it answered") if closing else self._crash_error(returncode, note)
        lost = self._end(error) + ([self._delivering] if self._delivering else [])  # its delivery failed or was cut
        if not isinstance(error, ProtocolError):
            level = logging.DEBUG if self._quiet or (returncode == 0 and not lost) else logging.WARNING
            logger.log(level, "worker pid %d ended with %d request(s) in flight: %s", proc.pid, len(lost), error)
        assert proc.stdout is not None
        proc.stdout.close()
        self._close_stdin(timeout=REAP_GRACE)
        for request in lost:
            try:
                request.owner.on_lost(request, error)
            except Exception:  # a bug; the other owners must still hear about the end
                logger.exception("my_module failed to hand a lost request back to its caller")

    def _crash_error(self, returncode: int, note: str) -> WorkerCrashedError:
        try:
            status = f"was killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exited with status {returncode}"
        except ValueError:
            status = f"was killed by signal {-returncode}"
        reasons = [r for r in (self._kill_reason and f"killed by my_module: {self._kill_reason}", note) if r]
        tail = tuple(self._stderr_tail)
        message = f"worker pid {self.pid} ({self.argv[0]}) {status}"
        if reasons:
            message += " (" + "; ".join(reasons) + ")"
        message += "; its last stderr lines:\n  " + "\n  ".join(tail) if tail else "; it wrote nothing to stderr"
        return WorkerCrashedError(message, returncode=returncode, stderr_tail=tail, pid=self.pid)

    # -- stderr -----------------------------------------------------------------------------------

    def _drain_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        # Lines longer than _MAX_STDERR_LINE come in pieces of that length.
        assert proc.stderr is not None
        with io.BufferedReader(proc.stderr, 1 << 16) as stream:  # type: ignore[type-var]
            try:
                for raw in iter(lambda: stream.readline(_MAX_STDERR_LINE), b""):
                    text = raw.rstrip(b"\n").decode("utf-8", "replace").rstrip("\r")
                    self._stderr_tail.append(text)
                    match = _LEVEL_WORDS.search(text, 0, 80)
                    level = _LEVELS[match.group(1).lower()] if match else logging.INFO
                    if worker_logger.isEnabledFor(level):
                        worker_logger.log(level, "[pid %d] %s", proc.pid, text)
            except (OSError, ValueError):
                pass
        with self._lock:  # the worker is gone or going: read its stdout to the end, and reap
            self._want_end_locked()


def release_if_owned(lock: Any) -> None:
    """Release ``lock`` (an RLock) if this thread holds it."""
    if lock._is_owned():
        lock.release()


class _Signal:
    """A sticky wake-up bit: a held lock released to signal. Setting it is one C call, so an
    interrupt landing on the setting thread cannot leave it half done (as it can a
    ``threading.Condition``'s notify); the waiter takes it."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass  # already set

    def wait(self) -> None:
        self._lock.acquire()


_FORGOTTEN: List[Any] = []


def _enlarge_pipe(fd: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    import fcntl

    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size or not permitted: keep the default
