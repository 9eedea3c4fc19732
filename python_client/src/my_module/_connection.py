"""One worker process: a :class:`State`, a table of pending requests by id, an outbox of small frames written
together, a writer lock, one read loop (its thread's, or a caller's for its own reply). A frame is whole on the
pipe or the worker is killed; start-up and the end run on the connection's thread (interrupts leak nothing)."""

from __future__ import annotations

import collections
import contextlib
import enum
import io
import itertools
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from . import _jsonrpc
from ._errors import ProtocolError, WorkerCrashedError, WorkerError, WorkerNotFoundError
from ._framing import Body, FrameReader, OversizedFrameError, WriteStalled, WriteTimeout, frame_header, write_frame
from ._methods import INITIALIZE, RAW_MEMBER, SHUTDOWN
from ._protocol import DEFAULT_MAX_FRAME_BYTES, ENCODING_JSON, FRAME_HEADER_BYTES, PROTOCOL_MAJOR

logger = logging.getLogger(__name__)
worker_logger = logging.getLogger("my_module.worker")

STDERR_TAIL_LINES = 20  # how many of its last stderr lines a WorkerCrashedError carries
# Seconds a frame already half-written may wait past its deadline with no progress at all
# before the worker is presumed hung and killed (a half-written frame cannot be taken back).
WRITE_STALL_GRACE = 1.0
REAP_GRACE = 2.0  # seconds a worker has to exit after its stdout ended, before it is killed
PIPE_BYTES = 1 << 20  # pipe capacity asked for on Linux (default 64 KiB); benchmarks/README.md
_MAX_STDERR_LINE = 4000  # longer stderr lines come in pieces of this length
_LEVELS = {"trace": 10, "debug": 10, "info": 20, "notice": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
_LEVEL_WORD = re.compile(r"\b(" + "|".join(_LEVELS) + r")\b", re.I)
_SIGNALS = {s.value: s.name for s in signal.Signals}
_FORGOTTEN: List[Any] = []  # a fork child's copies of its parent's Popen objects, never waited for
End = Tuple[Optional[WorkerError], str]  # how reading ended: a protocol error (else a crash); a note


_reading = type("_Reading", (threading.local,), {"value": False})()  # .value: this thread delivers replies


def on_reader_thread() -> bool:
    """True while this thread delivers replies (e.g. inside a Future callback run by it)."""
    return bool(_reading.value)


State = enum.Enum("State", {"NEW": "new", "STARTING": "starting", "READY": "ready", "CLOSING": "closing", "ENDED": "ended"})


class Owner(Protocol):  # whoever sent a request: told its outcome on the reading thread
    def on_reply(self, request: Request, is_error: bool, payload: Any) -> None: ...

    def on_lost(self, request: Request, error: WorkerError) -> None: ...


class Request:  # one wire request: its id, its owner (and the owner's tag), how far it got out
    __slots__ = ("rid", "owner", "tag", "sent", "writing", "withdrawn")

    def __init__(self, rid: int, owner: Owner, tag: Any = None) -> None:
        self.rid, self.owner, self.tag = rid, owner, tag
        self.sent = self.writing = self.withdrawn = False  # wholly written; taken by a writer; given up


class ConnectionBroken(Exception):
    """Writing failed: the worker is gone or was killed. The connection ends with why."""


class ConnectionRefused(Exception):
    """The connection takes no more requests (ending or ended)."""


class Connection:
    def __init__(self, argv: Tuple[str, ...], env: Optional[Mapping[str, str]], max_frame_bytes: int) -> None:
        self.argv, self._env, self.max_frame_bytes = argv, env, max_frame_bytes
        self.state = State.NEW
        self.error: Optional[WorkerError] = None  # why it ended (once ENDED)
        self.info: Dict[str, Any] = {}  # the initialize result (once READY)
        self.init_params: Dict[str, Any] = {}  # what initialize offers (set before start())
        self.peer_max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.peer_encodings: Tuple[str, ...] = (ENCODING_JSON,)
        self.plans: Dict[Any, Any] = {}  # a call's notes per method on this connection (_requests)
        self.pid: Optional[int] = None
        self.new_id = itertools.count(1).__next__
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._lock = threading.Lock()  # guards state, the table and the flags below
        # An RLock for its _is_owned(): a lock taken by hand (with a timeout) is released in a
        # finally whatever lands between the acquire and the try (a KeyboardInterrupt can).
        self._write_lock = threading.RLock()
        self._pending: Dict[int, Request] = {}
        self._outbox: Deque[Tuple[Optional[Request], bytes]] = collections.deque()  # small frames to write
        self._token: Optional[int] = None  # the thread reading stdout
        # The connection's thread waits on this held lock; releasing it (one C call, which an
        # interrupt cannot leave half done, as it can a Condition's notify) wakes it.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._to_end = False  # read until EOF (closing, killed, stderr ended)
        self._read_end: Optional[End] = None
        self._delivering: Optional[Request] = None  # taken off the table, delivery not finished
        self._kill_reason: Optional[str] = None
        self._quiet = False  # ended by close(), abandon() or the caller's interrupt: no warning
        # Held until the handshake is answered or the connection ended. Not an Event: an interrupt
        # landing inside Condition.wait can leave its lock released and surface as RuntimeError.
        self._ready = threading.Lock()
        self._ready.acquire()
        self._stderr_tail: Deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="my_module-reader", daemon=True)

    # -- life -------------------------------------------------------------------------------------

    def start(self) -> None:  # its thread spawns the worker and says initialize
        self._thread.start()

    def wait_ready(self, timeout: Optional[float]) -> bool:  # handshake answered or ended
        if self._ready.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._set_ready()  # for the next waiter
        return self.state is not State.NEW and self.state is not State.STARTING

    def _set_ready(self) -> None:
        with contextlib.suppress(RuntimeError):  # already open
            self._ready.release()

    def alive(self) -> bool:  # False if its start was cut short before its thread ran
        return self.state is not State.NEW or self._thread.is_alive()

    def _run(self) -> None:  # spawn the worker, say initialize, read until the end, reap
        _reading.value = True
        try:
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
                return
            assert proc.stdin is not None and proc.stdout is not None
            self._stdin, self._stdin_fd = proc.stdin, proc.stdin.fileno()  # closed only with the writer lock
            os.set_blocking(self._stdin_fd, False)
            for fd in (self._stdin_fd, proc.stdout.fileno()) if sys.platform.startswith("linux") else ():
                with contextlib.suppress(OSError):  # over /proc/sys/fs/pipe-max-size or not permitted: the default stays
                    __import__("fcntl").fcntl(fd, 1031, PIPE_BYTES)  # F_SETPIPE_SZ
            self._frames = FrameReader(proc.stdout.fileno(), self.max_frame_bytes)
            self._stderr_thread = threading.Thread(target=self._drain_stderr, args=(proc,),
                                                   name=f"my_module-stderr-{proc.pid}", daemon=True)
            self._stderr_thread.start()
            with self._lock:
                self._proc, self.pid = proc, proc.pid
                if self.state is State.NEW:
                    self.state = State.STARTING
                closing = self.state is not State.STARTING
            if closing:  # closed or abandoned while it was spawned: it ends at end of input
                self._close_stdin(timeout=REAP_GRACE)
            self._thread.name = f"my_module-reader-{proc.pid}"
            logger.debug("started worker pid %d: %s", proc.pid, " ".join(self.argv))
            self._say(INITIALIZE, self.init_params, None)
            while self._read_end is None and self.state is not State.ENDED:
                self._wake.acquire()
                self.serve(lambda: not self._pending and not self._to_end, None, poll=False)
            end = self._read_end or (None, "")
        except BaseException as exc:  # a bug: never leave callers waiting
            logger.exception("my_module reader thread failed")
            end = (ProtocolError(f"internal error in the reader thread: {exc!r}"), "")
        self._finish(*end)

    def _say(self, method: Any, params: Any, deadline: Optional[float]) -> None:  # its own initialize, shutdown
        rid = self.new_id()
        # It died, was closed, or reads nothing (shutdown's deadline): its end tells why.
        with contextlib.suppress(ConnectionBroken, ConnectionRefused, WriteTimeout):
            self.send(Request(rid, self, method), [_jsonrpc.request(rid, method.name, params)], deadline, force=True)

    def on_reply(self, request: Request, is_error: bool, result: Any) -> None:  # initialize, shutdown
        if request.tag is not INITIALIZE:
            return
        if is_error:
            raise ProtocolError(f"worker refused initialize: {result}")
        version = result.get("protocolVersion") if type(result) is dict else None
        if str(version).split(".")[0] != str(PROTOCOL_MAJOR):
            raise ProtocolError(f"worker speaks protocol {version}; this client speaks {PROTOCOL_MAJOR}.x: {result!r:.200}")
        limits, encodings = result.get("limits"), result.get("encodings")
        value = limits.get("maxFrameBytes") if isinstance(limits, dict) else None
        if type(value) is int and value > 0:
            self.peer_max_frame_bytes = value
        if isinstance(encodings, list) and all(isinstance(e, str) for e in encodings):
            self.peer_encodings = tuple(encodings)
        self.info = result
        with self._lock:
            if self.state is State.STARTING:
                self.state = State.READY
        self._set_ready()

    def on_lost(self, request: Request, error: WorkerError) -> None:
        pass  # the end opens _ready; its error says why

    def kill(self, reason: str, *, asked: bool = False) -> None:
        """SIGKILL the worker, which ends with ``reason``; ``asked``: the caller's interrupt did it (no warning)."""
        with self._lock:
            self._kill_reason = self._kill_reason or reason
            self._quiet = self._quiet or asked
            self._to_end = True
            proc = self._proc
        self._wake_up()
        if proc is not None and proc.returncode is None:
            # os.kill, not proc.kill(): Popen.kill() polls under a lock taken by hand, which a
            # KeyboardInterrupt can leave held. Only this connection's thread reaps, so until
            # then the pid cannot be reused.
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)

    def close(self, grace: float) -> None:
        """``shutdown``, stdin closed, reaped (SIGTERM then SIGKILL after ``grace`` s each)."""
        self._stop()
        proc = self._proc  # None: not spawned yet, and its thread, if it ever spawns, ends at once
        if proc is None and not self._thread.is_alive() and self.state is not State.ENDED:
            self._end(WorkerError("the worker was closed"))
        if proc is not None:
            self._say(SHUTDOWN, None, time.monotonic() + grace)
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
        if threading.current_thread() is not self._thread and self._thread.ident is not None:
            self._thread.join(timeout=grace + 2 * REAP_GRACE)

    def abandon(self) -> None:
        """Quietly close its stdin if no one is writing (never blocks): it finishes and exits."""
        self._stop()
        if self._proc is not None:
            self._close_stdin(timeout=0)

    def _stop(self) -> None:  # closing, quietly (unless it ended already)
        with self._lock:
            self._quiet = self._to_end = True
            if self.state is not State.ENDED:
                self.state = State.CLOSING
        self._wake_up()
        self._set_ready()

    def forget_after_fork(self) -> None:
        """In a fork child: drop the parent's worker with no I/O on its pipes."""
        proc = self._proc
        for stream in (proc.stdin, proc.stdout, proc.stderr) if proc is not None else ():
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]  # unbuffered (bufsize=0): writes nothing
        _FORGOTTEN.append(proc)  # no Popen.__del__ bookkeeping of another process's child

    # -- the table and writing --------------------------------------------------------------------

    def refusal(self) -> WorkerError:  # why send() refuses new requests
        return self.error or WorkerError("the worker was closed")

    def withdraw(self, request: Request) -> bool:
        """Give up ``request``: True if it is forgotten, never to be written (a queued frame is
        skipped); else it is cancelled once written, and its reply (late, or -32800) dropped."""
        with self._lock:
            request.withdrawn = True
            forgotten = not request.sent and not request.writing
            if request.sent:
                self._cancel_locked(request)
            elif forgotten:
                self._pending.pop(request.rid, None)
        self._flush()
        return forgotten

    def _cancel_locked(self, request: Request) -> None:
        if self.state is not State.ENDED:
            body = _jsonrpc.cancel(request.rid)
            self._outbox.append((None, frame_header(len(body)) + body))
            self._wake_up()  # its late reply must be read, maybe by no one else

    def send(self, request: Request, body: Sequence[bytes], deadline: Optional[float], *,
             self_read: bool = False, force: bool = False) -> bool:
        """Expect a reply to ``request`` (``self_read``: its caller reads it) and write ``body`` as one frame (a small
        one via the outbox). True: its reply or the connection's end will come; False: withdrawn first, never written.
        Raises ``ConnectionRefused`` (``force``: unless ended), ``WriteTimeout``, ``ConnectionBroken``."""
        size = sum(map(len, body))
        if deadline is not None and deadline < time.monotonic():
            raise WriteTimeout("the deadline passed before the request was written")
        with self._lock:
            if self.state is not State.READY and not (force and self.state is not State.ENDED):
                raise ConnectionRefused()
            if request.withdrawn:
                return False
            self._pending[request.rid] = request
            if size + FRAME_HEADER_BYTES <= select.PIPE_BUF:
                self._outbox.append((request, b"".join([frame_header(size), *body])))
                body = ()
        if not self_read:
            self._wake_up()
        try:
            return self._write_big(request, body, deadline) if body else True
        finally:
            self._flush()  # ours, and what queued behind the lock while it was held (even if ours failed)

    def _write_big(self, request: Request, body: Sequence[bytes], deadline: Optional[float]) -> bool:
        lock, dirty = self._write_lock, False
        try:
            wait = -1 if deadline is None else deadline - time.monotonic()
            if not (wait >= 0 or deadline is None) or not lock.acquire(timeout=wait):
                raise WriteTimeout("timed out waiting for the writer lock")
            # No lock: ``writing`` is set before ``withdrawn`` is read, and withdraw() does the
            # converse, so at least one of the two sees the other (the GIL orders them).
            request.writing = True
            if request.withdrawn:
                self._pending.pop(request.rid, None)
                return False
            if self._stdin.closed:
                raise ConnectionBroken("the worker's stdin is closed")
            dirty = True  # a frame may be partly written
            write_frame(self._stdin_fd, body, deadline, WRITE_STALL_GRACE, self._wake_up)
            request.sent = True  # before ``dirty`` is cleared: between the two, an interrupt replaces the worker
            dirty = False
            self._cancel_if_withdrawn(request)
        except (WriteStalled, OSError) as exc:
            why = str(exc) if isinstance(exc, WriteStalled) else f"writing to it failed: {exc}"
            self.kill("" if isinstance(exc, BrokenPipeError) else why)  # EPIPE: it ended by itself, not by us
            raise ConnectionBroken(str(exc)) from exc
        except BaseException as exc:  # WriteTimeout (nothing written), or an interrupt anywhere
            if dirty and not isinstance(exc, WriteTimeout):
                self.kill("the client was interrupted while writing a request", asked=True)
            elif not request.sent:  # once sent, its reply comes (and is dropped if withdrawn)
                with self._lock:
                    self._pending.pop(request.rid, None)
            raise
        finally:
            release_if_owned(lock)
        return True

    def _cancel_if_withdrawn(self, request: Request) -> None:
        # Called once ``sent`` is set, reading ``withdrawn`` without the lock: withdraw() sets ``withdrawn``
        # before it reads ``sent``, so one of the two sees the other's write and queues the cancel.
        if request.withdrawn:
            with self._lock:
                self._cancel_locked(request)

    def _flush(self) -> None:
        """Write the queued small frames, never waiting, joined up to PIPE_BUF bytes a write (so each is whole
        or nothing). A busy writer lock's holder flushes after its frame; a full pipe, the reader after a reply."""
        lock = self._write_lock
        while self._outbox and not self._stdin.closed:
            batch: List[Tuple[Optional[Request], bytes]] = []
            taking = False
            try:  # the lock taken inside: released whatever lands after the acquire
                if not lock.acquire(blocking=False) or self._stdin.closed:  # closed only with the lock
                    return  # its holder flushes after releasing it
                taking = True  # from here until the batch is marked sent, an interrupt replaces the worker
                with self._lock:
                    size, outbox = 0, self._outbox
                    while outbox and size + len(outbox[0][1]) <= select.PIPE_BUF:
                        request, frame = outbox.popleft()
                        if request is None or not request.withdrawn or request.writing:  # else forgotten by withdraw()
                            size += len(frame)
                            batch.append((request, frame))
                            if request is not None:
                                request.writing = True
                if batch:
                    os.write(self._stdin_fd, b"".join([frame for _, frame in batch]))
                for request, _ in batch:
                    if request is not None:
                        request.sent = True
                        self._cancel_if_withdrawn(request)
                taking = False
            except BlockingIOError:  # the pipe is full: back to the front of the queue, still to be written
                with self._lock:
                    self._outbox.extendleft(reversed(batch))
                return
            except OSError as exc:  # the worker is gone: its end hands the requests back
                self.kill("" if isinstance(exc, BrokenPipeError) else f"writing to it failed: {exc}")
                return
            except BaseException:  # whether the batch went out is unknown: the worker is replaced
                if taking:
                    self.kill("the client was interrupted while writing a request", asked=True)
                raise
            finally:
                release_if_owned(lock)

    def _close_stdin(self, timeout: float) -> None:
        # Only with the writer lock: closing an fd another thread is writing to could make
        # that write land on whatever file reuses the number.
        try:
            if self._write_lock.acquire(timeout=timeout) and self._proc is not None:
                self._stdin.close()  # set with _proc; closing twice does nothing
        finally:
            release_if_owned(self._write_lock)

    # -- reading ----------------------------------------------------------------------------------

    def _wake_up(self) -> None:  # the thread looks at what to read (the worker may wait for that)
        with contextlib.suppress(RuntimeError):  # already awake
            self._wake.release()

    def serve(self, done: Callable[[], bool], deadline: Optional[float], poll: bool = True) -> None:
        """The read loop: unless another thread reads (it delivers), deliver replies until
        ``done()`` or the deadline. ``poll``: wait for the pipe before reading (a caller)."""
        # A Ctrl-C lands between any two bytecodes: while waiting for the pipe that costs
        # nothing; once bytes may have been taken from it (``critical``) the stream's state is
        # unknown, so the worker is killed and its calls are retried.
        me, critical, reading = threading.get_ident(), False, _reading.value
        end: Optional[End] = None
        try:
            with self._lock:
                if self._token is not None or self._read_end is not None or self.state is State.ENDED:
                    return  # whoever reads wakes the connection's thread when leaving
                self._token = me
            frames = self._frames
            _reading.value = critical = True
            while True:  # what is buffered is delivered before leaving: replies go out in one pass
                body = frames.take()
                if body is None:
                    if done():
                        break
                    critical = False
                    if poll and not frames.wait(deadline):
                        return
                    critical = True
                    body = frames.fill()
                    if body is None:
                        continue
                self._deliver(body)
                if self._outbox:
                    self._flush()  # queued while the pipe was full
            critical = False
        except (EOFError, OSError) as exc:
            end = (None, str(exc) if isinstance(exc, EOFError) else f"reading its stdout failed: {exc}")
        except (OversizedFrameError, ProtocolError) as exc:
            end = (exc if isinstance(exc, ProtocolError) else ProtocolError(f"worker wrote garbage on stdout: {exc}"), "")
        except Exception as exc:  # a bug; never leave callers waiting forever
            logger.exception("my_module failed while reading a reply")
            end = (ProtocolError(f"internal error while reading a reply: {exc!r}"), "")
        except BaseException:
            if critical:
                end = (None, "the client was interrupted while reading a reply")
                self.kill(end[1], asked=True)
            raise
        finally:
            _reading.value = reading
            if self._token == me:
                with self._lock:
                    self._token = None
                    self._read_end = self._read_end or end
                    if self._pending or self._read_end or self._to_end:
                        self._wake_up()  # replies still expected, or the end: the thread goes on

    def _deliver(self, body: Body) -> None:
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

    # -- the end ----------------------------------------------------------------------------------

    def _end(self, error: WorkerError) -> List[Request]:
        with self._lock:
            self.error, self.state = error, State.ENDED
            lost, self._pending = list(self._pending.values()), {}
            self._outbox.clear()
        self._set_ready()
        return lost

    def _finish(self, error: Optional[WorkerError], note: str) -> None:
        proc = self._proc
        if proc is None:  # a bug before the spawn: nothing was sent
            self._end(self.refusal())
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
        if error is None and self.state in (State.CLOSING, State.ENDED):
            error = WorkerError("the worker was closed before it answered")
        elif error is None:
            status = f"was killed by {_SIGNALS.get(-returncode, f'signal {-returncode}')}" if returncode < 0 \
                else f"exited with status {returncode}"
            reasons = "; ".join(r for r in (self._kill_reason and f"killed by my_module: {self._kill_reason}", note) if r)
            tail = tuple(self._stderr_tail)
            message = f"worker pid {self.pid} ({self.argv[0]}) {status}" + (f" ({reasons})" if reasons else "")
            message += "; its last stderr lines:\n  " + "\n  ".join(tail) if tail else "; it wrote nothing to stderr"
            error = WorkerCrashedError(message, returncode=returncode, stderr_tail=tail, pid=self.pid)
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

    def _drain_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with io.BufferedReader(proc.stderr, 1 << 16) as stream:  # type: ignore[type-var]
            with contextlib.suppress(OSError, ValueError):
                for raw in iter(lambda: stream.readline(_MAX_STDERR_LINE), b""):
                    text = raw.rstrip(b"\n").decode("utf-8", "replace").rstrip("\r")
                    self._stderr_tail.append(text)
                    match = _LEVEL_WORD.search(text, 0, 80)
                    level = _LEVELS[match.group(1).lower()] if match else logging.INFO
                    worker_logger.log(level, "[pid %d] %s", proc.pid, text)
        with self._lock:  # the worker is gone or going: read its stdout to the end, and reap
            self._to_end = True
        self._wake_up()


def release_if_owned(lock: Any) -> None:  # an RLock
    if lock._is_owned():
        lock.release()
