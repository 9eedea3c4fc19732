"""Calls composed of wire requests, as ``Executor.map`` composes work: a :class:`Call` sends a request per chunk,
takes results in order (the first bad element wins, as in PyO3), cancels the rest once settled, resends only
what a crash lost. Its one completion slot is adapted by :func:`run`, :func:`as_future` and :func:`run_async`."""

from __future__ import annotations

import concurrent.futures
import functools
import heapq
import itertools
import logging
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from . import _convert, _methods, _shm
from ._connection import Connection, ConnectionBroken, ConnectionRefused, Request, on_reader_thread
from ._errors import WorkerCrashedError, WorkerError
from ._framing import WriteTimeout
from ._methods import ArrayEncoding, RpcMethod

logger = logging.getLogger(__name__)

_MISSING: Any = object()


class Connector(Protocol):  # what a call needs of its session: a ready connection, the Worker's options
    options: Any

    def connection(self, deadline: Optional[float]) -> Connection: ...


class Call:
    """One caller-visible operation: its chunks, their requests, and one completion slot."""

    # Slots: a small call's cost is mostly creating and reading these (bench_latency.py).
    __slots__ = ("connector", "method", "payload", "deadline", "retries_left", "reader", "lock", "bounds", "parts", "errors",
                 "requests", "taken", "settled", "cancelled", "error", "_source", "_source_encoding", "_retried", "_done",
                 "_callbacks", "_sending", "_send_wanted", "pieces", "__weakref__")

    def __init__(self, connector: Connector, method: RpcMethod, payload: Any, deadline: Optional[float], retries: int) -> None:
        self.connector = connector
        self.method = method
        self.payload: Any = payload  # the numbers (a NumberSequence) or the params; None once settled
        self.deadline = deadline
        self.retries_left = retries
        self.reader: Optional[int] = None  # the thread that reads a one-request call's reply
        self.lock = threading.Lock()
        self.bounds: List[Tuple[int, int]] = []  # chunk index -> [start, end) of the input
        self.parts: List[Any] = []  # chunk index -> its decoded result (a Part), or _MISSING
        self.errors: Dict[int, BaseException] = {}  # chunk index -> why it failed
        self.requests: Dict[int, Request] = {}  # chunk index -> its request in flight
        self.taken = 0  # chunks 0..taken-1 all have results
        self.settled = self.cancelled = False
        self.error: Optional[BaseException] = None
        self._source: Any = None  # what chunks are cut from (see ArrayMethod.prepare)
        self._source_encoding: Optional[ArrayEncoding] = None
        self._retried: List[BaseException] = []  # the crashes already counted against retries
        self._done = threading.Lock()  # held until settled: the slot's event
        self._done.acquire()
        self._callbacks: List[Callable[[Call], None]] = []
        self._sending = self._send_wanted = False  # a thread is in _send; another one wants it
        self.pieces = False  # convert in pieces, the GIL free between (an event loop waits on it)

    # -- the slot ---------------------------------------------------------------------------------

    def wait(self, deadline: Optional[float]) -> bool:
        """Wait until settled or ``deadline`` (a ``time.monotonic()`` value); True if settled."""
        got = self._done.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic()))
        if got:
            self._done.release()
        return got or self.settled

    def result(self) -> Any:
        """The outcome (once settled): the joined results, or raises the call's exception."""
        if self.error is not None:
            # Taken out of the call, and out of this frame once raised: the traceback refers to
            # the frames it passes; without this, exception -> traceback -> frame -> exception
            # (or -> call) is a cycle that keeps them all until the cyclic GC runs.
            error, self.error = self.error, None
            try:
                raise error
            finally:
                del error, self
        return self.method.assemble(self.parts, self.pieces)

    def add_done_callback(self, callback: Callable[[Call], None]) -> None:
        """Call ``callback(call)`` once settled (at once if it is), on the settling thread."""
        with self.lock:
            if not self.settled:
                self._callbacks.append(callback)
                return
        callback(self)

    # -- ends -------------------------------------------------------------------------------------

    def expire(self, why: str = "") -> None:
        """The deadline passed: ``TimeoutError``, and the requests in flight are cancelled."""
        message = f"{self.method.name} did not finish within its timeout"
        if self.settle(TimeoutError(f"{message}: {why}" if why else message)):
            logger.debug("%s request timed out; cancelling it in the worker", self.method.name)

    def cancel(self) -> bool:
        """Give up on the call; its requests in flight are cancelled in the worker."""
        self.cancelled = True
        return self.settle(concurrent.futures.CancelledError())

    def settle(self, error: Optional[BaseException]) -> bool:
        """Give the call its outcome (``error``, or None: its parts), if it has none yet."""
        with self.lock:  # the outcome is this one; what is in flight and the callbacks are taken
            if self.settled:
                return False
            self.settled, self.error = True, error
            self._done.release()  # in the same locked step as the outcome: the smallest window for an interrupt
            leftovers = list(self.requests.values()) if self.requests else ()
            self.requests.clear()
            callbacks, self._callbacks = self._callbacks, []
        self.payload = self._source = None
        if error is not None:
            self.parts = []
        for request in leftovers:
            if request.tag[1].withdraw(request):
                self._free(request)  # never to be written: its segment is ours
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # a bug in a callback must not stop the others
                logger.exception("my_module: a call's done-callback failed")
        return True

    # -- sending ----------------------------------------------------------------------------------

    def pump(self) -> None:
        """Send every chunk that needs it, on this thread, unless another thread is sending
        this call's chunks (it then sends these too)."""
        self._send_wanted = True
        while self._send_wanted and not self.settled:
            with self.lock:
                if self._sending:
                    return
                self._sending, self._send_wanted = True, False
            try:
                self._send()
            finally:
                self._sending = False

    def _send(self) -> None:
        method = self.method
        try:
            while not self.settled:
                try:
                    conn = self.connector.connection(self.deadline)
                except TimeoutError as exc:
                    self.expire(str(exc))
                    return
                except WorkerError as exc:
                    if not self._retry(exc):
                        return
                    continue
                plan = conn.plans.get(method)
                if plan is None:  # a method's frame limit, encoding and chunk size there, once
                    options = self.connector.options
                    limit = min(options.max_frame_bytes, conn.peer_max_frame_bytes)
                    enc = method.encoding(options.encodings, conn.peer_encodings)
                    plan = conn.plans[method] = (limit, enc, method.plan(options.chunk_size or enc.chunk, limit,
                                                                         options.max_frame_bytes))
                limit, encoding, size = plan
                payload, source = self.payload, self._source
                if self.settled:
                    return  # by another thread: the input may be released
                if not self.bounds:
                    n = method.count(payload)
                    self.bounds = [(start, min(start + size, n)) for start in range(0, n, size)] if n > size else [(0, n)]
                    self.parts = [_MISSING] * len(self.bounds)
                if self._source_encoding is not encoding or source is None:
                    source = self._source = method.prepare(payload, encoding, self.pieces)
                    self._source_encoding = encoding
                one = len(self.bounds) == 1
                self_read = one and self.reader == threading.get_ident()
                for index, (start, end) in enumerate(self.bounds):
                    with self.lock:
                        if self.settled or (self.errors and index >= min(self.errors)):
                            return
                        old = self.requests.get(index)
                        if self.parts[index] is not _MISSING or (old is not None and old.tag[1] is conn):
                            continue
                        request = Request(conn.new_id(), self, [index, conn, encoding, None])  # + its segment
                        self.requests[index] = request
                    try:
                        body, request.tag[2], request.tag[3] = method.body(
                            request.rid, source if one else source[start:end], encoding, limit, conn.plans.get(_shm.Pool),
                            self.pieces)
                        if not conn.send(request, body, self.deadline, self_read=self_read):
                            self._free(request)  # withdrawn before it went out
                    except (_convert.ElementError, ConnectionRefused, WriteTimeout, ConnectionBroken) as exc:
                        self._free(request)  # not written whole, so never answered: its segment is ours
                        if isinstance(exc, _convert.ElementError):  # found locally: nothing sent for it
                            self._record(index, request, error=_convert.element_error(start + exc.index, exc.value, exc.reason))
                        elif isinstance(exc, WriteTimeout):
                            self.expire()
                        elif isinstance(exc, ConnectionRefused):
                            self._drop(index, request)
                            break
                        return  # ConnectionBroken: the connection ends, and hands the lost requests back
                else:
                    return
                if not self._retry(conn.refusal()):
                    return
        except Exception as exc:  # a bug: fail the call rather than leave it hanging
            logger.exception("my_module failed to send a %s request", method.name)
            self.settle(WorkerError(f"internal error while sending the request: {exc!r}"))

    def _retry(self, error: BaseException) -> bool:
        """Whether to send again after ``error``: a crash, ``retries`` times (a call is pure), each dead
        connection counted once. If not, the call is settled with ``error``."""
        with self.lock:
            seen = any(crash is error for crash in self._retried)
            again = isinstance(error, WorkerCrashedError) and not self.settled and (seen or self.retries_left > 0)
            if again and not seen:
                self.retries_left -= 1
                self._retried.append(error)
        if again and not seen:
            logger.warning("retrying a %s call on a fresh worker after: %s", self.method.name, error)
        elif not again:
            self.settle(error)
        return again

    # -- replies (on the reading thread) ----------------------------------------------------------

    def on_reply(self, request: Request, is_error: bool, payload: Any) -> None:
        index, conn, encoding, held = request.tag
        try:
            if self.requests.get(index) is not request:
                return  # settled, or sent again elsewhere
            start, end = self.bounds[index]
            if is_error and _methods.refused_shm(encoding, payload):  # resent packed, off this thread
                _methods.stop_shm(conn.plans[_shm.Pool], f"the worker refused a segment: {payload}")
                if self._drop(index, request):
                    threading.Thread(target=self.pump, name="my_module-resend", daemon=True).start()
            elif is_error:
                self._record(index, request, error=self.method.error(payload, self.payload, start, end))
            else:
                # Decoded before the request is taken off the call: a ProtocolError here ends the
                # connection, which hands this request back through on_lost.
                self._record(index, request, self.method.decode(encoding, payload, end - start, held))
        finally:  # any reply: the worker no longer writes the segment
            self._free(request)

    def on_lost(self, request: Request, error: WorkerError) -> None:
        self._free(request)  # the worker is gone: the segment is ours again
        if not self._drop(request.tag[0], request):
            self._settle_if_decided()  # its result may be in: a delivery cut short between _record and settle
            return
        if self._retry(error):
            self.pump()  # resend what was lost, and only that

    def _drop(self, index: int, request: Request) -> bool:
        with self.lock:  # off the call, if it is still its chunk's request
            if self.requests.get(index) is not request:
                return False
            del self.requests[index]
            return True

    def _free(self, request: Request) -> None:
        """Its segment back to the pool, once (the sender and the reader may both try)."""
        if request.tag[3] is not None:
            with self.lock:
                held, request.tag[3] = request.tag[3], None
            if held is not None:
                request.tag[1].plans[_shm.Pool].release(held)

    def _record(self, index: int, request: Request, part: Any = _MISSING, error: Optional[BaseException] = None) -> None:
        """Chunk ``index`` has its ``part`` or ``error``: the call is settled once every chunk succeeded, or with
        the first failed chunk's error once all before it did."""
        with self.lock:
            if self.requests.get(index) is not request:
                return
            del self.requests[index]
            if error is not None:
                self.errors[index] = error
            else:
                self.parts[index] = part
        self._settle_if_decided()

    def _settle_if_decided(self) -> None:
        with self.lock:
            parts = self.parts
            if self.settled:
                return
            while self.taken < len(parts) and parts[self.taken] is not _MISSING:
                self.taken += 1
            first = min(self.errors) if self.errors else len(parts)
            if first > self.taken:
                return  # undecided
            outcome = self.errors.get(first)  # None: every chunk succeeded
        self.settle(outcome)


# -- adapters ---------------------------------------------------------------------------------------


def run(call: Call) -> Any:
    """The blocking call: send, read a one-request call's reply here if no one else reads,
    wait until the deadline. Any exception (``KeyboardInterrupt`` too) cancels the call."""
    if on_reader_thread():
        raise WorkerError("a blocking my_module call from a Future callback would deadlock the reader thread; "
                          "use submit() there instead")
    try:
        call.reader = threading.get_ident()
        call.pump()
        request = call.requests.get(0) if len(call.bounds) == 1 else None
        if request is not None and not call.settled:
            request.tag[1].serve(lambda: call.settled, call.deadline)
        if not call.settled and not call.wait(call.deadline):
            call.expire()
        return call.result()
    except BaseException:
        call.cancel()  # no-op if settled
        raise
    finally:
        del call  # no cycle through the exception's traceback (see Call.result)


def as_future(call: Call) -> "concurrent.futures.Future[Any]":
    """A Future settled with the call; cancelling it cancels the call. It holds the call
    weakly (the connection holds it while in flight), so refcounting frees a finished call."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.add_done_callback(functools.partial(_cancel_call, weakref.ref(call)))
    call.add_done_callback(functools.partial(_settle_future, future))
    return future


def _cancel_call(ref: "weakref.ReferenceType[Call]", future: concurrent.futures.Future[Any]) -> None:
    call = ref()
    if call is not None and future.cancelled():
        call.cancel()


def _settle_future(future: concurrent.futures.Future[Any], call: Call) -> None:
    try:
        if call.cancelled:
            future.cancel()
        elif call.error is not None:
            future.set_exception(call.error)
        else:
            future.set_result(call.result())
    except concurrent.futures.InvalidStateError:
        pass  # cancelled by its owner meanwhile


async def run_async(call: Call) -> Any:
    """The async call: written by the loop's default executor, answered through a Future."""
    import asyncio

    loop = asyncio.get_running_loop()
    call.pieces = True
    waiter = asyncio.wrap_future(as_future(call), loop=loop)
    loop.run_in_executor(None, call.pump)
    try:
        return await waiter
    finally:
        del call, waiter  # no cycle through the exception's traceback


class Deadlines:
    """Expires calls nobody may wait on (``submit``, async) at their deadline, from one
    daemon thread. Calls are held weakly: a finished one in the heap must not pin its result."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: List[Tuple[float, int, "weakref.ReferenceType[Call]"]] = []
        self._order = itertools.count()
        self._compact_at = 256
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

    def watch(self, call: Call) -> None:
        if call.deadline is None:
            return
        with self._cond:
            if self._stopped:
                return
            if len(self._heap) >= self._compact_at:  # drop the settled and the freed
                self._heap = [e for e in self._heap if not getattr(e[2](), "settled", True)]
                heapq.heapify(self._heap)
                self._compact_at = max(256, 2 * len(self._heap))
            heapq.heappush(self._heap, (call.deadline, next(self._order), weakref.ref(call)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="my_module-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2]() is call:
                self._cond.notify()

    def stop(self) -> None:
        """Stop the thread; calls still watched are left to their owners."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if not self._heap or self._heap[0][0] > now:
                        self._cond.wait(self._heap[0][0] - now if self._heap else None)
                        continue
                    call = heapq.heappop(self._heap)[2]()
                    if call is not None:
                        break
                else:
                    return
            call.expire()
            del call
