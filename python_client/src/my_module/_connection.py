"""One worker and the threads that alone touch its pipes: callers queue requests (``send``), the writer writes them,
joined; the reader spawns the worker, says ``initialize``, delivers replies, and at the end hands back the lost."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import enum
import logging
import os
import select
import signal
import threading
import time
from typing import Any, Deque, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from . import _jsonrpc
from ._errors import ProtocolError, WorkerError, WorkerNotFoundError
from ._framing import Body, FrameReader, OversizedFrameError, WriteStalled, frame_header, write_all
from ._methods import INITIALIZE, SHUTDOWN
from ._process import WorkerProcess, describe_status
from ._protocol import DEFAULT_MAX_FRAME_BYTES, ENCODING_JSON, PROTOCOL_MAJOR
from ._shm import Pool

logger = logging.getLogger(__name__)

REAP_GRACE = 2.0  # seconds a worker has to exit after its stdout ended, before it is killed
# Seconds the writer may make no progress, with every request it is writing given up by its caller, before the
# worker is presumed hung and killed (a frame half written can be neither finished nor taken back).
WRITE_STALL_GRACE = 1.0
BACKLOG_BYTES = 4 << 20  # queued, unwritten frames (and their segments) past which send() waits for room
BATCH_BYTES = 1 << 16  # small frames queued together leave in one write of up to this
NEW, QUEUED, WRITING, SENT = range(4)  # where a Request is (under its connection's lock)

_io = threading.local()


def on_io_thread() -> bool:  # a connection's reader or writer thread (Future callbacks run there): never block
    return getattr(_io, "value", False)


class Wakeup:
    """Wakes a sleeping thread: a held lock released in one C call (a Condition's wait can be left half done)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # already set
            self._lock.release()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout))


def wait(future: "concurrent.futures.Future[Any]", timeout: Optional[float]) -> bool:
    """Wait for ``future`` up to ``timeout`` s on this wait's own lock: an exception here leaves nothing shared."""
    done = Wakeup()
    future.add_done_callback(lambda _: done.set())
    return done.wait(timeout) or future.done()


class Request:  # one wire request (owner None: a notification); state and withdrawn change under the lock

    __slots__ = ("rid", "owner", "frame", "end", "state", "withdrawn")

    def __init__(self, rid: int, owner: Any) -> None:  # owner.on_reply(request, is_error, payload), .on_lost(request,
        # error) -> sent again?, on the reader thread
        self.rid, self.owner, self.frame = rid, owner, b""
        self.end = 0  # the queue's running total of weight up to this one (see _append)
        self.state, self.withdrawn = NEW, False


class ConnectionRefused(Exception):  # the connection takes no more requests (ending or ended)
    pass


State = enum.Enum("State", {"NEW": "new", "STARTING": "starting", "READY": "ready", "CLOSING": "closing", "ENDED": "ended"})


class Connection:
    def __init__(self, argv: Tuple[str, ...], env: Optional[Mapping[str, str]], max_frame_bytes: int,
                 pool: Optional[Pool]) -> None:
        self.argv, self._env, self.max_frame_bytes, self.pool = argv, env, max_frame_bytes, pool
        self._init_params = {"shmPrefix": pool.prefix} if pool is not None else {}  # shm offered with the pool
        self.state = State.NEW
        self.error: Optional[WorkerError] = None  # why it ended (once ENDED)
        self.info: Dict[str, Any] = {}  # the initialize result (once READY)
        self.peer_max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.peer_encodings: Tuple[str, ...] = (ENCODING_JSON,)
        self.process: Optional[WorkerProcess] = None
        self.ready: "concurrent.futures.Future[None]" = concurrent.futures.Future()  # handshake answered or ended
        self.started_at = time.monotonic()
        self._lock = threading.Lock()  # guards everything below, and every Request's state
        self._last_id = 0
        self._pending: Dict[int, Request] = {}  # written (or being written), not answered
        self._queue: Deque[Request] = collections.deque()  # to write, in order
        self._taken_end = 0  # the weight total up to the last request the writer took
        self._room: List[Wakeup] = []  # senders waiting for the backlog to shrink
        self._input_done = False  # no more frames: the writer closes stdin once the queue is empty
        self._writing = True  # the writer has taken frames, or stdin is closed: no caller writes now
        self._unlisted: Set[int] = set()  # ids written by a caller, maybe missing from _pending
        self._work = Wakeup()  # the writer's
        self._delivering: Optional[Request] = None  # its delivery raised ProtocolError: lost with the rest
        self._reader = threading.Thread(target=self._read_loop, name="my_module-reader", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="my_module-writer", daemon=True)

    @property
    def pid(self) -> Optional[int]:
        with self._lock:
            return None if self.process is None else self.process.pid

    def start(self) -> None:  # its reader thread spawns the worker and says initialize
        self._reader.start()

    def alive(self) -> bool:  # False if its start was cut short before its thread ran
        return self.status() is not State.NEW or self._reader.is_alive()

    def status(self) -> State:
        with self._lock:
            return self.state

    def new_id(self) -> int:
        with self._lock:
            self._last_id += 1
            return self._last_id

    # -- callers: send, withdraw ------------------------------------------------------------------

    def send(self, request: Request, body: Sequence[bytes], weight: int = 0, *, deadline: Optional[float] = None,
             room: bool = True, force: bool = False) -> None:
        """Queue ``body`` as ``request``'s frame (``weight``: what else it holds), after ``room`` in the backlog if asked
        (TimeoutError past ``deadline``); ConnectionRefused unless READY (``force``: unless ENDED)."""
        frame = b"".join([frame_header(sum(map(len, body))), *body])
        while True:
            with self._lock:
                if self.state is not State.READY and not (force and self.state is not State.ENDED):
                    raise ConnectionRefused()
                if request.withdrawn:
                    return
                if not weight and len(frame) <= select.PIPE_BUF and self._write_now(request, frame):
                    return
                if not room or self._backlog() <= BACKLOG_BYTES:
                    request.frame, request.state = frame, QUEUED
                    self._append(request, len(frame) + weight)
                    break
                wakeup = Wakeup()
                self._room.append(wakeup)
            if not wakeup.wait(None if deadline is None else deadline - time.monotonic()):
                raise TimeoutError("timed out waiting for room in the worker's input")
        self._work.set()

    def _write_now(self, request: Request, frame: bytes) -> bool:
        """With the lock: a lone small frame written at once, whole or not at all (at most PIPE_BUF bytes), saving a
        thread handoff. Should an exception land between the write and the table, the reply of ``_unlisted`` is dropped."""
        if self._queue or self._writing or self._pending or self.process is None or self.state is not State.READY:
            return False
        self._unlisted.add(request.rid)
        try:
            os.write(self.process.stdin_fd, frame)
        except OSError:  # full (it is queued instead), or the worker is gone (the reader sees the end)
            self._unlisted.discard(request.rid)
            return False
        self._pending[request.rid], request.state = request, SENT
        self._unlisted.discard(request.rid)
        return True

    def _backlog(self) -> int:  # with the lock: the weight queued and not yet taken, a difference of running totals
        return (self._queue[-1].end if self._queue else self._taken_end) - self._taken_end

    def _append(self, request: Request, weight: int) -> None:  # with the lock
        request.end = self._taken_end + self._backlog() + weight
        self._queue.append(request)

    def withdraw(self, request: Request) -> bool:
        """Give ``request`` up: True if never to be written; else cancelled once written (its reply still comes)."""
        with self._lock:
            request.withdrawn = True
            if request.state is SENT and self.state is not State.ENDED:
                self._cancel(request)
            return request.state in (NEW, QUEUED)

    def _cancel(self, request: Request) -> None:  # with the lock
        notification, body = Request(0, None), _jsonrpc.cancel(request.rid)
        notification.frame = frame_header(len(body)) + body
        self._append(notification, 0)
        self._work.set()

    # -- the writer thread ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        _io.value = True
        process = self.process
        assert process is not None
        try:
            while True:
                batch = self._take()
                if not batch:
                    break
                data = batch[0].frame if len(batch) == 1 else b"".join([r.frame for r in batch])
                write_all(process.stdin_fd, data, lambda idle: idle >= WRITE_STALL_GRACE and self._given_up(batch))
                with self._lock:
                    for request in batch:
                        request.state, request.frame = SENT, b""
                        if request.withdrawn and request.owner is not None and self.state is not State.ENDED:
                            self._cancel(request)
                del batch, request  # nothing held while _take() waits: a finished call's result is its caller's
        except WriteStalled as exc:
            process.kill(str(exc))
        except OSError as exc:  # EPIPE: it ended by itself, not by us
            process.kill("" if isinstance(exc, BrokenPipeError) else f"writing to it failed: {exc}")
        except BaseException as exc:  # a bug: the reader ends the connection once the worker is gone
            logger.exception("my_module's writer thread failed")
            process.kill(f"internal error in the writer thread: {exc!r}")
        finally:
            with self._lock:
                self._writing = True
            with contextlib.suppress(OSError):  # the worker sees end of input
                process.popen.stdin.close()  # type: ignore[union-attr]

    def _take(self) -> List[Request]:  # the next frames to write, up to BATCH_BYTES (a big one alone); [] at the end
        while True:
            with self._lock:
                queue, batch, size = self._queue, [], 0  # type: Deque[Request], List[Request], int
                while queue and (not batch or size + len(queue[0].frame) <= BATCH_BYTES):
                    request = queue.popleft()
                    self._taken_end = request.end
                    if not request.withdrawn or request.owner is None:
                        request.state = WRITING
                        if request.owner is not None:
                            self._pending[request.rid] = request
                        batch.append(request)
                        size += len(request.frame)
                room = self._room if self._backlog() <= BACKLOG_BYTES else []
                if room:
                    self._room = []
                ended = self.state is State.ENDED
                over = ended or (self._input_done and not batch)
                self._writing = bool(batch) or over
            for wakeup in room:
                wakeup.set()
            if batch or over:
                return [] if ended else batch
            self._work.wait()

    def _given_up(self, batch: List[Request]) -> bool:
        with self._lock:
            return all(r.withdrawn or r.owner is None for r in batch) or self.state is State.ENDED

    # -- the reader thread ------------------------------------------------------------------------

    def _read_loop(self) -> None:
        _io.value = True
        try:
            try:
                if self.status() is not State.NEW:  # closed before its thread ran
                    raise WorkerError("the worker was closed")
                process = WorkerProcess(self.argv, self._env)
            except (OSError, WorkerError) as exc:
                self._end(exc if isinstance(exc, WorkerError) else
                          WorkerNotFoundError(f"cannot start the worker {self.argv[0]!r}: {exc}"))
                return
            with self._lock:
                self.process, closing = process, self.state is not State.NEW
                self.state = self.state if closing else State.STARTING
            self._reader.name, self._writer.name = f"my_module-reader-{process.pid}", f"my_module-writer-{process.pid}"
            self._writer.start()
            logger.debug("started worker pid %d: %s", process.pid, " ".join(self.argv))
            rid = self.new_id()
            self.send(Request(rid, self), [_jsonrpc.request(rid, INITIALIZE.name, self._init_params)], force=True)
            if closing:  # closed while it was spawned: it ends at end of input
                self.abandon()
            end = self._read_frames(process)
        except BaseException as exc:  # a bug: never leave callers waiting
            logger.exception("my_module's reader thread failed")
            end = (ProtocolError(f"internal error in the reader thread: {exc!r}"), "")
        self._finish(*end)

    def _read_frames(self, process: WorkerProcess) -> Tuple[Optional[WorkerError], str]:  # (protocol error, note)
        frames = FrameReader(process.stdout_fd, self.max_frame_bytes)
        try:
            while True:
                body = frames.take()
                if body is None:
                    body = frames.fill()
                if body is not None:
                    self._deliver(body)
        except (EOFError, OSError) as exc:
            return None, str(exc) if isinstance(exc, EOFError) else f"reading its stdout failed: {exc}"
        except (OversizedFrameError, ProtocolError) as exc:
            error = exc if isinstance(exc, ProtocolError) else ProtocolError(f"worker wrote garbage on stdout: {exc}")
            if self.status() is State.STARTING and not self.info:
                error = ProtocolError(f"{self.argv[0]} is not a squares-worker: it did not answer initialize "
                                      f"as one ({error})")
            return error, ""

    def _deliver(self, body: Body) -> None:
        reply = _jsonrpc.parse_reply(body)
        if reply is None:
            return  # a notification from the worker: nothing asked for it
        rid, is_error, payload = reply
        with self._lock:
            request = self._pending.pop(rid, None)
            if request is None and rid in self._unlisted:
                self._unlisted.discard(rid)
                return  # its caller was interrupted right after writing it: nobody waits for it
        if request is None:
            raise ProtocolError(f"worker replied to request {rid}, which is not in flight")
        try:
            request.owner.on_reply(request, is_error, payload)
        except ProtocolError:  # the worker broke the contract: the connection ends, and fails this one too
            self._delivering = request  # (the reader thread's own field)
            raise
        except Exception as exc:  # a bug while delivering: that request fails, not the others
            logger.exception("my_module failed to deliver a reply")
            request.owner.on_lost(request, WorkerError(f"internal error while delivering a reply: {exc!r}"))

    def on_reply(self, request: Request, is_error: bool, result: Any) -> None:  # initialize (shutdown: nothing)
        if self.status() is not State.STARTING or self.info:
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

    def on_lost(self, request: Request, error: WorkerError) -> bool:
        return False  # the end settles ``ready``; its error says why

    def _set_ready(self) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.ready.set_result(None)

    # -- the end ----------------------------------------------------------------------------------

    def kill(self, reason: str) -> None:
        with self._lock:
            if self.process is not None:
                self.process.kill(reason)

    def close(self, grace: float) -> None:
        """``shutdown`` after what is in flight, end of input, then SIGTERM and SIGKILL ``grace`` s apart; reaped."""
        with self._lock:
            process = self.process if self.state is not State.ENDED else None
            self.state = State.CLOSING if process is not None else self.state  # no new requests behind shutdown
        if process is not None:
            rid = self.new_id()
            with contextlib.suppress(ConnectionRefused):
                self.send(Request(rid, self), [_jsonrpc.request(rid, SHUTDOWN.name)], force=True)
        self.abandon()
        if threading.current_thread() is self._reader or self._reader.ident is None:
            return
        self._reader.join(timeout=grace)
        if self._reader.is_alive() and process is not None:
            logger.warning("worker pid %d ignored shutdown; sending SIGTERM", process.pid)
            process.signal(signal.SIGTERM)
            self._reader.join(timeout=grace)
            if self._reader.is_alive():
                logger.warning("worker pid %d ignored SIGTERM; killing it", process.pid)
                process.kill("it ignored shutdown and SIGTERM")
        self._reader.join(timeout=2 * REAP_GRACE)

    def abandon(self) -> None:
        """Closing, quietly: its input ends once what is queued is written, so it finishes and exits (never blocks)."""
        with self._lock:
            if self.state is not State.ENDED:
                self.state = State.CLOSING
            self._input_done = True
        self._work.set()
        self._set_ready()

    def forget_after_fork(self) -> None:  # in a fork child: the parent's worker dropped, no I/O on its pipes
        if self.process is not None:
            self.process.forget_after_fork()

    def refusal(self) -> WorkerError:  # why send() refuses new requests
        return self.error or WorkerError("the worker was closed")

    def _end(self, error: WorkerError) -> List[Request]:
        with self._lock:
            self.error, self.state = error, State.ENDED
            lost = [*self._pending.values(), *(r for r in self._queue if r.owner is not None and not r.withdrawn)]
            self._pending, self._room, room = {}, [], self._room
            self._queue.clear()
        for wakeup in room:
            wakeup.set()
        self._work.set()
        self._set_ready()
        return lost

    def _finish(self, error: Optional[WorkerError], note: str) -> None:
        process = self.process
        if process is None:  # a bug before the spawn: nothing was sent
            self._end(self.refusal())
            return
        if error is not None:  # (one that never started is reported once, by its callers' exception)
            logger.log(logging.ERROR if self.info else logging.DEBUG, "worker pid %d broke the protocol: %s", process.pid, error)
            process.kill(f"it broke the protocol: {error}")
        returncode = process.reap(REAP_GRACE)
        process.close_stdout(REAP_GRACE)
        quiet = self.status() is State.CLOSING
        if error is None:
            error = WorkerError("the worker was closed before it answered") if quiet else process.crash_report(returncode, note)
        lost = self._end(error) + ([self._delivering] if self._delivering else [])
        retried = 0
        for request in lost:
            try:
                retried += bool(request.owner.on_lost(request, error))
            except Exception:  # a bug; the other owners must still hear about the end
                logger.exception("my_module failed to hand a lost request back to its caller")
        # A worker that never started is reported once, by the exception its callers get.
        if self.info and not quiet and not isinstance(error, ProtocolError) and (lost or returncode):
            why = f" (killed by my_module: {process.kill_reason})" if process.kill_reason else ""
            outcome = f"{retried} retried on a fresh worker" if retried else "failed" if lost else "none lost"
            logger.warning("worker pid %d %s%s with %d request(s) in flight: %s", process.pid,
                           describe_status(returncode), why, len(lost), outcome)
        else:
            logger.debug("worker pid %d ended: %s", process.pid, error)
