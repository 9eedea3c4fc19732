"""The public handle on a worker process: :class:`Worker`."""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import math
import os
import threading
import time
import weakref
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import _convert
from ._calls import Call, CallSettled, RpcCall, SmallCall, SquaresCall, squares_error
from ._connection import (
    ConnectionBroken,
    ConnectionRefused,
    Connection,
    Owner,
    on_reader_thread,
)
from ._deadlines import DeadlineWatcher
from ._errors import WorkerCrashedError, WorkerError
from ._framing import WriteTimeout, frame_header
from ._locate import Command, find_worker
from ._protocol import DEFAULT_MAX_FRAME_BYTES, ENCODING_JSON, ENCODING_PACKED, Method

logger = logging.getLogger(__name__)

CHUNK_SIZE = 32768
"""Largest number of elements sent in one request; bigger inputs are split and pipelined.
Measured with ``benchmarks/bench_chunks.py``; see the README's Performance section."""

_FRAME_OVERHEAD = 128  # request envelope around the numbers array, generously

_workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()


class _Slot:
    """The Worker's per-process parts, shared with its finalizer (which must not hold the
    Worker itself)."""

    conn: Optional[Connection] = None
    watcher: Optional[DeadlineWatcher] = None


class Worker:
    """A handle on one ``squares-worker`` process, started on first use.

    Calls from many threads may be in flight at once: they share one writer lock and one
    reader thread, and replies are matched to callers by request id. A worker that dies is
    replaced by a fresh one on the next call, and calls it had in flight are retried once (the
    computation is pure); a worker that breaks the protocol is killed and replaced.

    :param command: the worker to run: a path, a command line (split like a shell would) or
        an argv sequence. Default: ``$MY_MODULE_WORKER``, then ``squares-worker`` on PATH,
        then this repository's ``.build/release`` then ``.build/debug`` output.
    :param timeout: default per-call timeout in seconds (None: wait as long as it takes).
        An expired call raises ``TimeoutError`` and is cancelled in the worker.
    :param max_frame_bytes: the largest frame this client sends or accepts (default 64 MiB;
        frames sent are also kept under the limit the worker announces).
    :param env: the worker's whole environment (as in ``subprocess``); None: inherit ours.
    :raises WorkerNotFoundError: no worker executable was found.
    :raises ValueError: a negative timeout or a non-positive ``max_frame_bytes``.
    """

    startup_timeout: float = 10.0
    """Seconds a new worker has to answer ``initialize`` before it is killed."""

    shutdown_timeout: float = 2.0
    """Seconds :meth:`close` waits after ``shutdown``, then again after SIGTERM, before SIGKILL."""

    retries: int = 1
    """How many times a call whose worker crashed is sent again to a fresh worker."""

    chunk_size: int = CHUNK_SIZE
    """Largest number of elements per request (inputs above it are pipelined in chunks)."""

    encodings: Tuple[str, ...] = (ENCODING_PACKED, ENCODING_JSON)
    """Encodings of ``numbers`` this client may use, preferred first; the packed one (protocol
    1.1) is used only if the worker's ``initialize`` lists it. JSON is always possible."""

    def __init__(
        self,
        command: Optional[Command] = None,
        *,
        timeout: Optional[float] = None,
        max_frame_bytes: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.command: Tuple[str, ...] = find_worker(command)
        self.timeout: Optional[float] = _check_timeout(timeout)
        if max_frame_bytes is None:
            max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        if max_frame_bytes < 1024:
            raise ValueError(f"max_frame_bytes must be at least 1024, not {max_frame_bytes!r}")
        self.max_frame_bytes: int = max_frame_bytes
        self._env: Optional[Dict[str, str]] = None if env is None else dict(env)
        self._closed = False
        self._slot = _Slot()
        self._reset_runtime_state()
        self._finalizer = weakref.finalize(self, _abandon, self._slot)
        _workers.add(self)

    def _reset_runtime_state(self) -> None:
        # Everything that belongs to one process: rebuilt in a fork child.
        self._spawn_lock = threading.Lock()
        self._slot.watcher = self._watcher = DeadlineWatcher(f"my_module-deadlines-{id(self):x}")
        self._owner_pid = os.getpid()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pid={self.pid}"
        return f"<my_module.Worker {' '.join(self.command)!r} {state}>"

    def __reduce__(self) -> Any:
        # A Worker owns a process and its pipes, which no other process can use: refuse to be
        # pickled (dask, multiprocessing) with a message that says what to send instead.
        raise TypeError(
            "a my_module.Worker cannot be pickled: it owns a local worker process. Send the "
            "numbers and call my_module.calculate_squares (or create a Worker) in the receiving process"
        )

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- public API -----------------------------------------------------------------------------

    def calculate_squares(self, numbers: Iterable[Any], *, timeout: Optional[float] = None) -> List[int]:
        """Return ``[n * n for n in numbers]``, computed by the worker, exactly.

        :param numbers: any iterable of ints in ``0 <= n <= 2**32 - 1`` (list, tuple, range,
            generator, ``array.array``, numpy integer array; ``bool`` counts as 0/1 as in PyO3).
        :param timeout: seconds (None: this Worker's ``timeout``; ``math.inf``: no limit).
        :raises TypeError: ``numbers`` is a str, bytes, mapping, None or not iterable, or an
            element is not an integer (the message names its index).
        :raises OverflowError: an element is negative or above ``2**32 - 1`` (index named).
        :raises TimeoutError: the call did not finish in time (it is cancelled in the worker).
        :raises WorkerNotFoundError: the worker executable cannot be started.
        :raises WorkerCrashedError: the worker died, twice (the call is retried once).
        :raises ProtocolError: the worker broke the wire contract (it is replaced).
        :raises WorkerError: this Worker is closed, or another worker failure.
        """
        if self._closed:
            raise WorkerError("this Worker is closed")
        sequence = _convert.as_sequence(numbers)
        deadline = self._deadline(timeout)
        small = self._small_call(sequence, deadline)
        if small is not None:
            return small
        squares: List[int] = self._run(SquaresCall(self, sequence, deadline, self.retries))
        return squares

    def submit(self, numbers: Iterable[Any], *, timeout: Optional[float] = None) -> "concurrent.futures.Future[List[int]]":
        """Start ``calculate_squares(numbers)`` and return its Future at once.

        Blocks only while the input is written to the worker (bounded by the timeout). The
        Future raises what :meth:`calculate_squares` raises; the timeout is enforced even if
        nobody waits on it. ``future.cancel()`` cancels the request in the worker. Callbacks
        added to the Future run on the reader thread: they must not block.

        :raises TypeError: ``numbers`` itself is not a usable argument (raised here, not via
            the Future); element errors come through the Future.
        :raises WorkerError: this Worker is closed.
        """
        call = self._prepare_squares(numbers, timeout)
        if call.deadline is not None:
            self._watcher.watch(call)
        self._dispatch(call)
        return call.future

    async def calculate_squares_async(self, numbers: Iterable[Any], *, timeout: Optional[float] = None) -> List[int]:
        """``await``-able :meth:`calculate_squares` that does not block the event loop on I/O.

        The input is turned into a sequence on the calling thread (a generator is consumed
        there, a numpy array's ``tolist()`` runs there); it is encoded and written by a thread
        of the loop's default executor, and the result arrives through the call's Future. Cancelling the awaiting task cancels the request in the
        worker. Raises what :meth:`calculate_squares` raises.
        """
        import asyncio

        call = self._prepare_squares(numbers, timeout)
        if call.deadline is not None:
            self._watcher.watch(call)
        loop = asyncio.get_running_loop()
        waiter = asyncio.wrap_future(call.future, loop=loop)
        loop.run_in_executor(None, self._dispatch, call)
        try:
            result: List[int] = await waiter
        finally:
            del call, waiter  # no cycle through the exception's traceback (see _run)
        return result

    @property
    def info(self) -> Dict[str, Any]:
        """The worker's ``initialize`` result (protocol version, limits, parallelism, ...).

        Starts the worker if it is not running.

        :raises WorkerNotFoundError, WorkerCrashedError, ProtocolError, TimeoutError,
            WorkerError: as for :meth:`calculate_squares`.
        """
        conn = self._connection(self._deadline(None))
        return copy.deepcopy(conn.handshake.future.result())

    @property
    def pid(self) -> Optional[int]:
        """The process id of the running worker, or None if none is running."""
        conn = self._slot.conn
        if conn is None or conn.dead or self._owner_pid != os.getpid():
            return None
        return conn.pid

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop the worker and wait for it: no process is left behind (no zombie).

        Sends ``shutdown`` (the worker finishes the requests in flight), closes its stdin,
        and if it has not exited after :attr:`shutdown_timeout` seconds sends SIGTERM, then
        SIGKILL. Calls still waiting then fail with ``WorkerError``. The Worker cannot be used
        afterwards (make a new one). Idempotent; never raises.
        """
        with self._spawn_lock:
            self._closed = True
            conn, self._slot.conn = self._slot.conn, None
        self._watcher.stop()
        self._finalizer.detach()
        if conn is not None and self._owner_pid == os.getpid():
            conn.close(self.shutdown_timeout)

    # -- internal request API (tests use it to drive test/sleep) ---------------------------------

    def _request(self, method: str, params: Any = None, *, timeout: Optional[float] = None, retries: int = 0) -> Any:
        """Send one request and return its result (raises as :meth:`calculate_squares`)."""
        call = RpcCall(self, method, params, self._deadline(timeout), retries)
        return self._run(call)

    def _submit_request(self, method: str, params: Any = None, *, timeout: Optional[float] = None) -> "concurrent.futures.Future[Any]":
        call = RpcCall(self, method, params, self._deadline(timeout), 0)
        if call.deadline is not None:
            self._watcher.watch(call)
        self._dispatch(call)
        return call.future

    def _in_flight(self) -> int:
        """Requests sent to the current worker and not answered yet."""
        conn = self._slot.conn
        return 0 if conn is None else conn.in_flight()

    # -- machinery ------------------------------------------------------------------------------

    def _deadline(self, timeout: Optional[float]) -> Optional[float]:
        timeout = self.timeout if timeout is None else _check_timeout(timeout)
        if timeout is None or math.isinf(timeout):
            return None
        return time.monotonic() + timeout

    def _prepare_squares(self, numbers: Iterable[Any], timeout: Optional[float]) -> SquaresCall:
        if self._closed:
            raise WorkerError("this Worker is closed")
        sequence = _convert.as_sequence(numbers)
        return SquaresCall(self, sequence, self._deadline(timeout), self.retries)

    def _run(self, call: Call) -> Any:
        """Send ``call`` and wait for it on this thread; expire it at its deadline."""
        if on_reader_thread():
            raise WorkerError(
                "a blocking my_module call from a Future callback would deadlock the reader "
                "thread; use submit() there instead"
            )
        future = call.future
        conn: Optional[Connection] = None
        try:
            self._dispatch(call, self_read=True)
            conn = call.conn
            if conn is not None and not call.claimed and call.part_count() == 1:
                # Read the reply on this thread if no one else is reading: no hand-off.
                conn.serve_until(call.is_claimed, call.deadline)
            remaining = call.remaining()
            if remaining is not None:
                try:
                    return future.result(timeout=max(0.0, remaining))
                except concurrent.futures.TimeoutError:
                    if future.done():
                        raise  # the call's own TimeoutError (the same class on 3.11+)
                call.expire()
            return future.result()
        except BaseException:
            future.cancel()  # no-op if done; else cancels its requests in the worker
            conn = call.conn
            if conn is not None:
                conn.wake_reader()  # this thread will not read the cancelled request's reply
            raise
        finally:
            # An exception raised here holds this frame (its traceback) and the Future holds
            # the exception: without these locals that is no reference cycle keeping the
            # call, its Future and the caller's frames alive until the cyclic GC runs.
            del call, future, conn

    def _small_call(self, numbers: Sequence[Any], deadline: Optional[float]) -> Optional[List[int]]:
        """A one-request call, the common case made cheap: no Future, no chunk bookkeeping, and
        the reply read on this thread unless another thread is reading (then it hands the reply
        over through the call's event).

        Returns None, having sent nothing, when the general path must make the call: no worker
        ready yet, an element the fast encoders refuse (the general path names it), an input
        that needs chunks, this thread is a reader. A crash is retried on the general path.
        Raises what :meth:`calculate_squares` raises.
        """
        conn = self._slot.conn
        if (
            conn is None
            or not conn.handshake.ok
            or conn.dead
            or conn.closing
            or self._owner_pid != os.getpid()
            or on_reader_thread()
        ):
            return None
        count = len(numbers)
        limit = min(self.max_frame_bytes, conn.peer_max_frame_bytes)
        if count > min(
            self.chunk_size,
            (limit - _FRAME_OVERHEAD) // _convert.MAX_ELEMENT_BYTES,
            (self.max_frame_bytes - _FRAME_OVERHEAD) // _convert.MAX_SQUARE_BYTES,
        ):
            return None
        packed = ENCODING_PACKED in self.encodings and ENCODING_PACKED in conn.peer_encodings
        if packed:
            body = _convert.encode_packed(numbers)
            if body is None:
                return None
            params: Tuple[bytes, ...] = (b'{"numbersPacked":"', body, b'"}}')
        else:
            try:
                body = _convert.encode_chunk(numbers, limit - _FRAME_OVERHEAD)
            except (_convert.ElementError, TypeError, OverflowError, ValueError):
                return None
            params = (b'{"numbers":', body, b"}}")
        rid = conn.new_id()
        head = b'{"jsonrpc":"2.0","id":%d,"method":"calculate_squares","params":' % rid
        frame = b"".join((frame_header(len(head) + sum(map(len, params))), head, *params))
        call = SmallCall(packed, count)
        # A KeyboardInterrupt can land anywhere on the main thread. While the request is being
        # registered and written, the input stream's state is not known (a frame may be half
        # written): the worker is killed and whatever it had is retried elsewhere. Once it is
        # written, the request is cancelled in the worker and the reader thread reads its reply.
        writing = True
        in_time = True
        try:
            try:
                conn.register(rid, call, 0, self_read=True)
            except ConnectionRefused:
                writing = False
                return None
            try:
                conn.send(frame, deadline)
            except WriteTimeout:
                conn.unregister(rid)
                writing = in_time = False
                raise TimeoutError(f"{Method.CALCULATE_SQUARES.value} did not finish within its timeout") from None
            except ConnectionBroken:
                pass  # the connection is ending: its reader hands `call` the end
            writing = False
            conn.serve_until(call.is_done, deadline)
            if not call.is_done():
                if deadline is None:
                    call.event.acquire()
                else:
                    in_time = call.event.acquire(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException:
            if writing:
                conn.kill("the client was interrupted while writing a request")
            in_time = False
            raise
        finally:
            if not in_time and not writing and call.outcome is None and call.lost is None:
                conn.post_cancel([rid])
                conn.wake_reader()  # this thread will not read the cancelled request's reply
        if not in_time:
            raise TimeoutError(f"{Method.CALCULATE_SQUARES.value} did not finish within its timeout")
        if call.lost is not None:
            if isinstance(call.lost, WorkerCrashedError) and self.retries > 0:
                logger.warning("retrying a calculate_squares call on a fresh worker after: %s", call.lost)
                squares: List[int] = self._run(SquaresCall(self, numbers, deadline, self.retries - 1))
                return squares
            # Taken out of the call, so that no local of this frame refers to the exception
            # (its traceback refers to this frame: a cycle would keep `numbers` alive).
            raise call.take_lost()
        if call.failed:
            raise squares_error(call.outcome, numbers, 0, count)
        if packed:
            return _convert.squares_from_bytes(call.outcome)
        result: List[int] = call.outcome
        return result

    def _dispatch(self, call: Call, self_read: bool = False) -> None:
        """Send the call's unfinished parts. Never raises: every outcome goes to the Future.

        ``self_read``: the caller will try to read a one-part call's reply itself
        (:meth:`Connection.serve_until`), so the reader thread is not woken for it.
        """
        try:
            while not call.claimed:
                try:
                    conn = self._connection(call.deadline)
                except TimeoutError as exc:
                    call.expire(str(exc))
                    return
                except WorkerCrashedError as exc:
                    if self._take_retry(call, exc):
                        continue
                    call.fail(exc)
                    return
                except WorkerError as exc:
                    call.fail(exc)
                    return
                with call.lock:
                    if call.claimed:
                        return
                    call.conn = conn
                if not self._send_parts(call, conn, self_read):
                    return
                # The connection refused a part: it died or is closing. Unless its reader
                # already took over this call (it had parts in flight there), decide here.
                error = conn.refusal_error()
                with call.lock:
                    if call.conn is not conn:
                        return
                    call.conn = None
                if not self._take_retry(call, error):
                    call.fail(error)
                    return
        except Exception as exc:  # a bug: fail the call rather than leave it hanging
            logger.exception("my_module failed to send a %s request", call.method)
            call.fail(WorkerError(f"internal error while sending the request: {exc!r}"))
        except BaseException:
            call.future.cancel()
            raise

    def _send_parts(self, call: Call, conn: Connection, self_read: bool = False) -> bool:
        """Write the call's unfinished parts to ``conn``; True if ``conn`` refused one."""
        limit = min(self.max_frame_bytes, conn.peer_max_frame_bytes)
        packed = ENCODING_PACKED in self.encodings and ENCODING_PACKED in conn.peer_encodings
        # Chunks small enough that the request fits both limits and the reply (squares are
        # about twice as long as the numbers) fits ours.
        call.plan(max(1, min(
            self.chunk_size,
            (limit - _FRAME_OVERHEAD) // _convert.MAX_ELEMENT_BYTES,
            (self.max_frame_bytes - _FRAME_OVERHEAD) // _convert.MAX_SQUARE_BYTES,
        )))
        for index in call.unfinished_parts():
            if call.claimed:
                return False
            rid = conn.new_id()
            try:
                frame = call.part_frame(index, rid, limit, packed)
            except CallSettled:
                return False  # timed out or cancelled by another thread since the check above
            except (TypeError, OverflowError, ValueError) as exc:
                call.part_failed(index, exc)
                return False
            if not call.track(conn, index, rid):
                return False
            try:
                conn.register(rid, call, index, self_read=self_read and call.part_count() == 1)
            except ConnectionRefused:
                call.untrack(index)
                return True
            try:
                conn.send(frame, call.deadline)
            except WriteTimeout:
                conn.unregister(rid)
                call.untrack(index)
                call.expire()
                return False
            except ConnectionBroken:
                return False  # the reader reports the end and retries or fails the call
            if call.claimed:
                conn.post_cancel([rid])  # settled while we were writing it
                return False
        return False

    def _take_retry(self, call: Call, error: WorkerError) -> bool:
        if not isinstance(error, WorkerCrashedError):
            return False
        with call.lock:
            if call.retries_left <= 0 or call.future.done():
                return False
            call.retries_left -= 1
        logger.warning("retrying a %s call on a fresh worker after: %s", call.method, error)
        return True

    def _call_lost(self, call: Call, conn: Connection, error: WorkerError) -> None:
        """``conn`` ended with parts of ``call`` in flight (on that connection's reader thread)."""
        with call.lock:
            if call.conn is not conn:
                return  # a sender already moved on from this connection
            call.conn = None
        if self._take_retry(call, error):
            self._dispatch(call)
        else:
            call.fail(error)

    def _connection(self, deadline: Optional[float]) -> Connection:
        """The running, initialized connection; spawns a worker if there is none.

        Raises ``TimeoutError``, ``WorkerNotFoundError``, ``WorkerCrashedError`` (it died before
        answering ``initialize``), ``ProtocolError`` (bad ``initialize`` answer) or
        ``WorkerError`` (closed).
        """
        if self._owner_pid != os.getpid():
            _reset_after_fork(self)  # a fork that skipped os.register_at_fork handlers
        conn = self._slot.conn
        if conn is None or conn.dead or conn.closing:
            if deadline is None:
                self._spawn_lock.acquire()
            elif not self._spawn_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError("timed out waiting for another thread to start the worker")
            try:
                if self._closed:
                    raise WorkerError("this Worker is closed")
                conn = self._slot.conn
                if conn is None or conn.dead or conn.closing:
                    conn = Connection(self.command, self._env, self.max_frame_bytes, _tell_owners)
                    conn.start()
                    self._slot.conn = conn
            finally:
                self._spawn_lock.release()
        self._wait_ready(conn, deadline)
        return conn

    def _wait_ready(self, conn: Connection, deadline: Optional[float]) -> None:
        if conn.handshake.ok:
            return
        handshake = conn.handshake.future
        if not handshake.done():
            startup_deadline = conn.started_at + self.startup_timeout
            limit = startup_deadline if deadline is None else min(deadline, startup_deadline)
            try:
                handshake.result(timeout=max(0.0, limit - time.monotonic()))
            except concurrent.futures.TimeoutError:
                if handshake.done():
                    raise
                if time.monotonic() < startup_deadline:
                    raise TimeoutError("timed out waiting for the worker to start") from None
                reason = f"it did not answer initialize within {self.startup_timeout:g} s"
                conn.kill(reason)
                raise TimeoutError(f"the worker {reason}") from None
        handshake.result()  # raises the handshake's error, if any


def _check_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise ValueError(f"timeout must be None or a number >= 0, not {timeout!r}")
    return value


def _tell_owners(conn: Connection, error: WorkerError, lost: List[Tuple[Owner, int]]) -> None:
    """A connection ended: tell each owner of requests still in flight, once."""
    seen = set()
    for owner, _ in lost:
        if id(owner) in seen:
            continue
        seen.add(id(owner))
        try:
            owner.on_lost(conn, error)
        except Exception:  # a bug; the other owners must still hear about the end
            logger.exception("my_module failed to hand a lost request back to its caller")
            if isinstance(owner, Call):
                owner.fail(error)


def _abandon(slot: _Slot) -> None:
    # Finalizer of a Worker that was never closed: end-of-input makes the worker finish and
    # exit by itself, and its reader thread reaps it. Must not block (it may run in GC).
    if slot.watcher is not None:
        slot.watcher.stop()
    conn = slot.conn
    if conn is not None:
        conn.abandon()


def _reset_after_fork(worker: Worker) -> None:
    """In a fork child: forget the parent's worker process; the next call starts our own."""
    conn, worker._slot.conn = worker._slot.conn, None
    if conn is not None:
        conn.forget_after_fork()
    worker._reset_runtime_state()


def _reset_all_after_fork() -> None:
    for worker in list(_workers):
        _reset_after_fork(worker)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
