"""A :class:`Call` (a Future) converts its input and hands a request per chunk to the connection, takes results in
order (the first bad element wins, as in PyO3), cancels the rest once settled, resends only what a crash lost."""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import logging
import threading
import time
import weakref
from typing import Any, Dict, List, Optional, Tuple

from . import _convert, _methods, _shm
from ._connection import Connection, ConnectionRefused, Request, Wakeup, on_io_thread, wait
from ._errors import WorkerCrashedError, WorkerError
from ._methods import JSON, ArrayEncoding, RpcMethod

logger = logging.getLogger(__name__)

_MISSING: Any = object()


class ChunkRequest(Request):
    """The request carrying chunk ``index`` of a call on ``conn``, and the shm segment it holds until answered."""

    __slots__ = ("index", "conn", "encoding", "segment")

    def __init__(self, rid: int, owner: Call, index: int, conn: Connection) -> None:
        super().__init__(rid, owner)
        self.index, self.conn = index, conn
        self.encoding: ArrayEncoding = JSON
        self.segment: Optional[_shm.Segment] = None


class Call(concurrent.futures.Future):  # type: ignore[type-arg]
    """A caller's operation: its chunks, their requests, its outcome (set in :meth:`settle` only). Shared fields change
    under ``lock``; a wait is on the waiter's own lock (``_connection.wait``), never on the Future's Condition."""

    def __init__(self, session: Any, method: RpcMethod, payload: Any, deadline: Optional[float], retries: int,
                 out: Any = None) -> None:
        super().__init__()  # stays PENDING until settled: cancel() works until then
        self.session, self.method, self.deadline, self.retries_left = session, method, deadline, retries
        self.out = out  # the caller's buffer for the squares (its result), or None: a list
        self.into = None if out is None else _convert.as_out(out, method.count(payload))  # its bytes
        self.payload: Any = payload  # the numbers (a NumberSequence) or the params; None once settled
        self.lock = threading.Lock()
        self.bounds: List[Tuple[int, int]] = []  # chunk index -> [start, end) of the input
        self.parts: List[Any] = []  # chunk index -> its decoded result (a Part), or _MISSING
        self.errors: Dict[int, BaseException] = {}  # chunk index -> why it failed
        self.requests: Dict[int, ChunkRequest] = {}  # chunk index -> its request in flight
        self.taken = 0  # chunks 0..taken-1 all have results
        self.settled = False
        self.pieces = False  # convert in pieces, the GIL free between (an event loop waits on it)
        self._retried: List[BaseException] = []  # the crashes already counted against retries
        self._sending = self._send_wanted = False  # a thread is in _send; another one wants it

    def result(self, timeout: Optional[float] = None) -> Any:
        try:
            if not wait(self, timeout):
                raise concurrent.futures.TimeoutError()
            return super().result(0)
        finally:
            del self  # no cycle: its exception -> the traceback -> this frame -> the call

    def cancel(self) -> bool:
        """Give up on the call (unless settled): its requests are withdrawn, cancelled in the worker."""
        if not super().cancel():
            return False
        self.settle(concurrent.futures.CancelledError())
        return True

    # -- ends -------------------------------------------------------------------------------------

    def expire(self, why: str = "") -> None:  # the deadline passed: TimeoutError, what is in flight withdrawn
        message = f"{self.method.name} did not finish within its timeout"
        self.settle(TimeoutError(f"{message}: {why}" if why else message))

    def settle(self, error: Optional[BaseException], result: Any = None) -> bool:
        """Give the call its outcome (``error``, else ``result``) if it has none yet; what is in flight is withdrawn."""
        with self.lock:
            if self.settled:
                return False
            self.settled, leftovers, self.requests = True, list(self.requests.values()), {}
            self.payload = None
        for request in leftovers:
            if request.conn.withdraw(request):
                self._free(request)  # never to be written: its segment is ours
        try:
            if error is None:
                self.set_result(result)
            else:
                self.set_exception(error)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled
        return True

    # -- sending ----------------------------------------------------------------------------------

    def pump(self) -> None:
        """Convert and hand over every chunk that needs it, here, unless another thread is at it (it does these too)."""
        with self.lock:
            self._send_wanted = True
            if self._sending:
                return
            self._sending = True
        try:
            while True:
                with self.lock:
                    if not self._send_wanted or self.settled:
                        return
                    self._send_wanted = False
                self._send()
        except BaseException as exc:  # an exception in this thread ends this call alone; it propagates as itself
            if on_io_thread():  # a bug: no caller would see it
                logger.exception("my_module failed to send a %s request", self.method.name)
            self.settle(WorkerError(f"internal error while sending the request: {exc!r}") if on_io_thread()
                        else concurrent.futures.CancelledError())  # not ``exc``: its traceback holds this call
            raise
        finally:
            with self.lock:
                self._sending = False

    def _send(self) -> None:
        method = self.method
        while True:
            try:
                conn = self.session.connection(self.deadline)
            except TimeoutError as exc:  # the call's own deadline, or startup_timeout's error as it is
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    self.expire(str(exc))
                else:
                    self.settle(exc)
                return
            except WorkerError as exc:
                if not self._retry(exc):
                    return
                continue
            options = self.session.options
            limit = min(options.max_frame_bytes, conn.peer_max_frame_bytes)
            encoding = method.encoding(options.encodings, conn.peer_encodings)
            size = method.plan(options.chunk_size or encoding.chunk, limit, options.max_frame_bytes)
            with self.lock:
                payload = self.payload
                if self.settled:
                    return
                if not self.bounds:
                    n = method.count(payload)
                    self.bounds = [(start, min(start + size, n)) for start in range(0, n, size)] if n > size else [(0, n)]
                    self.parts = [_MISSING] * len(self.bounds)
            if not self._send_chunks(conn, payload, encoding, limit) or not self._retry(conn.refusal()):
                return

    def _send_chunks(self, conn: Connection, source: Any, encoding: ArrayEncoding, limit: int) -> bool:
        """Hand over each chunk without a result or a request on ``conn``; True if ``conn`` refused one."""
        one = len(self.bounds) == 1
        for index, (start, end) in enumerate(self.bounds):
            with self.lock:
                if self.settled or (self.errors and index >= min(self.errors)):
                    return False
                old = self.requests.get(index)
                if self.parts[index] is not _MISSING or (old is not None and old.conn is conn):
                    continue
                request = self.requests[index] = ChunkRequest(conn.new_id(), self, index, conn)
            try:
                body, used, segment = self.method.body(request.rid, source if one else source[start:end], encoding,
                                                       limit, conn.pool, self.pieces)
                with self.lock:
                    request.encoding, request.segment, current = used, segment, self.requests.get(index) is request
                if not current:  # settled meanwhile: never to be sent
                    self._free(request)
                    return False
                conn.send(request, body, 0 if segment is None else segment.size, deadline=self.deadline,
                          room=not on_io_thread())
            except (_convert.ElementError, ConnectionRefused, TimeoutError) as exc:
                self._free(request)  # never written, so never answered: its segment is ours
                if isinstance(exc, _convert.ElementError):  # found locally: nothing sent for it
                    self._record(index, request, error=_convert.element_error(start + exc.index, exc.value, exc.reason))
                elif isinstance(exc, TimeoutError):
                    self.expire(str(exc))
                    return False
                else:
                    self._drop(index, request)
                    return True
        return False

    def _retry(self, error: BaseException) -> bool:
        """Send again after a crash, ``retries`` times (each dead worker counted once); else settle with ``error``."""
        with self.lock:
            seen = any(crash is error for crash in self._retried)
            again = isinstance(error, WorkerCrashedError) and not self.settled and (seen or self.retries_left > 0)
            if again and not seen:
                self.retries_left -= 1
                self._retried.append(error)
        if not again:
            self.settle(error)
        return again

    # -- replies (on the reader thread) ----------------------------------------------------------

    def on_reply(self, request: ChunkRequest, is_error: bool, payload: Any) -> None:
        index = request.index
        try:
            with self.lock:
                if self.requests.get(index) is not request:
                    return  # settled, or sent again elsewhere
                (start, end), numbers = self.bounds[index], self.payload
            into = None if self.into is None else self.into[8 * start:8 * end]
            if is_error and _methods.refused_shm(request.encoding, payload):  # resent packed, from here
                _methods.stop_shm(request.conn.pool, f"the worker refused a segment: {payload}")
                if self._drop(index, request):
                    self.pump()
            elif is_error:
                self._record(index, request, error=self.method.error(payload, numbers, start, end))
            else:
                self._record(index, request, self.method.decode(request.encoding, payload, end - start, request.segment,
                                                                into))
        finally:  # any reply: the worker no longer writes the segment
            self._free(request)

    def on_lost(self, request: ChunkRequest, error: WorkerError) -> bool:
        self._free(request)  # the worker is gone: the segment is ours again
        if not self._drop(request.index, request):
            self._settle_if_decided()  # its result may be in: a delivery that failed between _record and settle
            return False
        if self._retry(error):
            self.pump()  # resend what was lost, and only that
            return True
        return False

    def _drop(self, index: int, request: ChunkRequest) -> bool:
        with self.lock:  # off the call, if it is still its chunk's request
            if self.requests.get(index) is not request:
                return False
            del self.requests[index]
            return True

    def _free(self, request: ChunkRequest) -> None:
        """Its segment back to the pool, once (the sender, the reader and the end may each try)."""
        with self.lock:
            segment, request.segment = request.segment, None
        if segment is not None and request.conn.pool is not None:
            request.conn.pool.release(segment)

    def _record(self, index: int, request: ChunkRequest, part: Any = _MISSING, error: Optional[BaseException] = None) -> None:
        """Chunk ``index`` has its ``part`` or ``error``; settled once all did, or the first failure's all before it."""
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
            while self.taken < len(parts) and parts[self.taken] is not _MISSING:
                self.taken += 1
            first = min(self.errors) if self.errors else len(parts)
            if first > self.taken or self.settled:
                return  # undecided
            outcome = self.errors.get(first)  # None: every chunk succeeded
        self.settle(outcome, None if outcome is not None else self.method.assemble(parts, self.pieces, self.out))


# -- the three ways to wait -------------------------------------------------------------------------


def run(call: Call) -> Any:
    """The blocking call; any exception (``KeyboardInterrupt`` too) withdraws it and propagates as itself."""
    if on_io_thread():
        raise WorkerError("a blocking my_module call from a Future callback would deadlock the reader thread; "
                          "use submit() there instead")
    try:
        call.pump()
        if not wait(call, None if call.deadline is None else call.deadline - time.monotonic()):
            call.expire()
        return call.result()
    except BaseException:
        call.cancel()  # no-op if settled
        raise
    finally:
        del call  # no cycle through the exception's traceback


def submit(call: Call, deadlines: Deadlines) -> "concurrent.futures.Future[Any]":
    """The call handed over and returned, as a Future (its deadline kept by ``deadlines``)."""
    deadlines.watch(call)
    try:
        call.pump()
    except BaseException:
        call.cancel()
        raise
    return call


async def run_async(call: Call, deadlines: Deadlines) -> Any:
    """The async call: converted and handed over by the loop's default executor, answered through its Future."""
    import asyncio

    loop = asyncio.get_running_loop()
    call.pieces = True
    deadlines.watch(call)
    waiter = asyncio.wrap_future(call, loop=loop)
    loop.run_in_executor(None, call.pump)
    try:
        return await waiter
    except BaseException:  # cancelled, or an exception raised in this task: the call is withdrawn
        call.cancel()
        raise
    finally:
        del call, waiter  # no cycle through the exception's traceback


class Deadlines:
    """Expires calls nobody may wait on (submit, async) at their deadline, from a thread; held weakly (not pinned)."""

    def __init__(self) -> None:
        self._lock, self._wakeup, self._order = threading.Lock(), Wakeup(), itertools.count()
        self._heap: Optional[List[Tuple[float, int, "weakref.ReferenceType[Call]"]]] = []  # None once stopped
        self._thread: Optional[threading.Thread] = None

    def watch(self, call: Call) -> None:
        with self._lock:
            heap = self._heap
            if call.deadline is None or heap is None:
                return
            if len(heap) >= 256 and not len(heap) & (len(heap) - 1):  # at each power of two: drop the finished
                heap[:] = [e for e in heap if not getattr(e[2](), "done", lambda: True)()]
                heapq.heapify(heap)
            heapq.heappush(heap, (call.deadline, next(self._order), weakref.ref(call)))
            thread, start = self._thread, self._thread is None
            if start:
                thread = self._thread = threading.Thread(target=self._run, name="my_module-deadlines", daemon=True)
        if start:
            thread.start()  # type: ignore[union-attr]
        else:
            self._wakeup.set()

    def stop(self) -> None:  # calls still watched are left to their owners
        with self._lock:
            self._heap = None
        self._wakeup.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                heap, now = self._heap, time.monotonic()
                if heap is None:
                    return
                call = heapq.heappop(heap)[2]() if heap and heap[0][0] <= now else None
                sleep = heap[0][0] - now if heap else None
            if call is not None:
                call.expire()
                del call
            else:
                self._wakeup.wait(sleep)
