"""Request/response bookkeeping: one caller-visible operation (a :class:`Call`) and its Future.

A call is made of one or more JSON-RPC requests ("parts": the chunks of a big input). The
reader thread reports each part's reply with :meth:`Call.on_result`/:meth:`Call.on_error`;
the call settles its Future exactly once, in :meth:`Call._settle`. Whatever settles it (all
replies in, an error, a timeout, a cancelled Future), the parts still in flight are cancelled
in the worker with ``$/cancel``.
"""

from __future__ import annotations

import binascii
import concurrent.futures
import functools
import json
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _convert
from ._errors import ProtocolError, WorkerError
from ._framing import frame_header
from ._protocol import JSONRPC_VERSION, ErrorCode, Method, Reason

if TYPE_CHECKING:
    from array import array

    from ._connection import Connection
    from ._worker import Worker

logger = logging.getLogger(__name__)


def request_frame(rid: int, method: str, params: Any = None) -> bytes:
    """A whole frame (header included) holding one JSON-RPC request."""
    message: Dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "id": rid, "method": method}
    if params is not None:
        message["params"] = params
    body = json.dumps(message, separators=(",", ":")).encode()
    return frame_header(len(body)) + body


def notification_frame(method: str, params: Any) -> bytes:
    """A whole frame holding one JSON-RPC notification (no id: never answered)."""
    message = {"jsonrpc": JSONRPC_VERSION, "method": method, "params": params}
    body = json.dumps(message, separators=(",", ":")).encode()
    return frame_header(len(body)) + body


def cancel_frame(rid: int) -> bytes:
    """The ``$/cancel`` notification for request ``rid``."""
    return notification_frame(Method.CANCEL.value, {"id": rid})


def error_from_reply(error: Dict[str, Any], method: str) -> WorkerError:
    """A :class:`WorkerError` carrying a JSON-RPC error object the caller did not expect."""
    code = error.get("code")
    exc = WorkerError(f"worker answered {method} with error {code}: {error.get('message')}")
    exc.code = code
    exc.data = error.get("data")
    return exc


def check_error_object(error: Any) -> Dict[str, Any]:
    """Return ``error`` if it is a JSON-RPC error object; raise ``ProtocolError`` if not."""
    if (
        type(error) is dict
        and type(error.get("code")) is int
        and isinstance(error.get("message"), str)
    ):
        return error
    raise ProtocolError(f"worker sent a malformed error object: {error!r:.200}")


class CallSettled(Exception):
    """The call was settled (timed out, cancelled, failed) by another thread while its parts
    were being written: the rest must not be sent, and its payload may already be released."""


class Call:
    """One operation a caller waits for: a Future, a deadline and the parts in flight.

    Subclasses say what the parts are (:meth:`part_count`, :meth:`part_frame`) and what a
    reply means (:meth:`on_result`, :meth:`on_error`).
    """

    method: str = ""

    def __init__(self, worker: Worker, deadline: Optional[float], retries: int) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.worker = worker
        self.deadline = deadline
        self.retries_left = retries
        self.lock = threading.Lock()
        self.conn: Optional[Connection] = None  # the connection the parts are on
        self._inflight: Dict[int, int] = {}  # part index -> request id on self.conn
        self._finished: List[bool] = [False]  # per part: its reply (result or error) is in
        # Set (under lock) by the one path allowed to settle, just before it does, and by the
        # Future's done callback (so also on Future.cancel()): read without the lock, it says
        # "settled, or about to be" as cheaply as an attribute can.
        self._claimed = False
        # The callback holds the call weakly: Future -> callback -> call -> Future would be a
        # cycle, keeping every finished call's result alive until the cyclic GC ran (a soak
        # ended with ~3,000,000 squares held that way). A call with parts in flight is held
        # by its connection, so it is there when they need cancelling.
        self.future.add_done_callback(functools.partial(_cancel_leftovers_of, weakref.ref(self)))

    @property
    def claimed(self) -> bool:
        """True once the call is settled or being settled (cheaper than ``future.done()``)."""
        return self._claimed

    def is_claimed(self) -> bool:
        return self._claimed

    # -- parts --------------------------------------------------------------------------------

    def plan(self, chunk_size: int) -> None:
        """Decide the parts, given the largest chunk a frame may hold (default: one part)."""

    def part_count(self) -> int:
        return 1

    def part_frame(self, index: int, rid: int, max_frame_bytes: int, packed: bool) -> bytes:
        """The whole frame of part ``index`` as request ``rid``.

        ``packed``: the worker takes protocol 1.1's packed encoding, if the part can use it.
        """
        raise NotImplementedError

    def unfinished_parts(self) -> List[int]:
        """Indexes of the parts that still need a reply (all of them before the first send)."""
        with self.lock:
            return [i for i, done in enumerate(self._finished) if not done]

    def track(self, conn: Connection, index: int, rid: int) -> bool:
        """Record that part ``index`` goes out as request ``rid``; False if already settled."""
        with self.lock:
            if self._claimed or self.conn is not conn:
                return False
            self._inflight[index] = rid
            return True

    def part_failed(self, index: int, exc: BaseException) -> None:
        """Part ``index`` could not even be encoded: by default the whole call fails."""
        self.fail(exc)

    def untrack(self, index: int) -> None:
        with self.lock:
            self._inflight.pop(index, None)

    def _mark_finished(self, index: int) -> bool:
        """Under self.lock: note that part ``index`` has its reply; False if that's stale."""
        if self._claimed or self._finished[index]:
            return False
        self._finished[index] = True
        self._inflight.pop(index, None)
        return True

    # -- replies (called on the reader thread) ------------------------------------------------

    def on_result(self, index: int, result: Any) -> None:
        with self.lock:
            if not self._mark_finished(index):
                return
            self._claimed = True
        self._settle(result=result)

    def on_error(self, index: int, error: Dict[str, Any]) -> None:
        with self.lock:
            if not self._mark_finished(index):
                return
            self._claimed = True
        self._settle(exc=self.translate_error(index, error))

    def translate_error(self, index: int, error: Dict[str, Any]) -> BaseException:
        if error["code"] == ErrorCode.REQUEST_CANCELLED:
            return WorkerError(f"the worker cancelled the {self.method} request")
        return error_from_reply(error, self.method)

    def on_lost(self, conn: Connection, error: WorkerError) -> None:
        """The connection died with parts of this call in flight: retry or fail."""
        self.worker._call_lost(self, conn, error)

    # -- ends ---------------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Settle with ``exc`` unless already settled."""
        with self.lock:
            if self._claimed:
                return
            self._claimed = True
        self._settle(exc=exc)

    def expire(self, why: Optional[str] = None) -> None:
        """The deadline passed: settle with ``TimeoutError`` and cancel the parts in flight."""
        with self.lock:
            if self._claimed:
                return
            self._claimed = True
        logger.debug("%s request timed out; cancelling it in the worker", self.method)
        message = f"{self.method} did not finish within its timeout"
        self._settle(exc=TimeoutError(f"{message}: {why}" if why else message))

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (None: no deadline; may be <= 0)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _settle(self, result: Any = None, exc: Optional[BaseException] = None) -> None:
        # The one place a call's Future gets its outcome. The caller of this method has
        # claimed the call under the lock, so only a concurrent Future.cancel() can race.
        try:
            if exc is not None:
                self.future.set_exception(exc)
            else:
                self.future.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass  # the Future was cancelled by its owner meanwhile

    def _cancel_leftovers(self, future: concurrent.futures.Future[Any]) -> None:
        # Runs once, when the Future is done for any reason (including Future.cancel()).
        with self.lock:
            self._claimed = True
            leftovers = list(self._inflight.values())
            self._inflight.clear()
            conn = self.conn
        self.release_payload()
        if leftovers and conn is not None:
            conn.post_cancel(leftovers)

    def release_payload(self) -> None:
        """Drop references to big inputs/outputs once settled (timed-out calls may linger)."""


def _cancel_leftovers_of(ref: "weakref.ReferenceType[Call]", future: concurrent.futures.Future[Any]) -> None:
    call = ref()
    if call is not None:
        call._cancel_leftovers(future)


class RpcCall(Call):
    """A single request with any method (used for ``initialize``-free internal requests)."""

    def __init__(
        self, worker: Worker, method: str, params: Any, deadline: Optional[float], retries: int
    ) -> None:
        super().__init__(worker, deadline, retries)
        self.method = method
        self.params = params

    def part_frame(self, index: int, rid: int, max_frame_bytes: int, packed: bool) -> bytes:
        return request_frame(rid, self.method, self.params)


class SquaresCall(Call):
    """``calculate_squares`` of one input, split into chunks pipelined as separate requests.

    Chunk k+1 is encoded and written while the worker computes chunk k. Replies may come in
    any order; the results are put back in input order. When chunks report bad elements, the
    error of the lowest index wins once every chunk before it has succeeded, so the exception
    is the one PyO3 would raise for the first bad element.
    """

    method = Method.CALCULATE_SQUARES.value

    def __init__(
        self, worker: Worker, numbers: Sequence[Any], deadline: Optional[float], retries: int
    ) -> None:
        super().__init__(worker, deadline, retries)
        self.numbers: Optional[Sequence[Any]] = numbers
        self.bounds: List[Tuple[int, int]] = []
        # Per part: its squares (a list from a JSON reply, the raw little-endian u64s of a packed
        # one, turned into ints in one pass at the end), or None until its reply is in.
        self._results: List[Union[List[int], bytes, None]] = []
        self._errors: Dict[int, BaseException] = {}
        self._packed_parts: Dict[int, bool] = {}  # part index -> sent in the packed encoding
        # The whole input as u32s, packed once for all its chunks (None: not tried yet, or
        # array() refused an element: then each chunk is packed, or sent as JSON, on its own).
        self._packed_whole: Optional["array[int]"] = None
        self._packed_whole_tried = False
        self._prefix = 0  # parts 0.._prefix-1 all have replies

    def plan(self, chunk_size: int) -> None:
        """Split the input into chunks of ``chunk_size`` (once: a retry keeps the plan)."""
        with self.lock:
            if self.bounds or self.numbers is None:
                return
            n = len(self.numbers)
            self.bounds = [
                (start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)
            ] or [(0, 0)]
            self._results = [None] * len(self.bounds)
            self._finished = [False] * len(self.bounds)

    def part_count(self) -> int:
        return len(self.bounds)

    def part_frame(self, index: int, rid: int, max_frame_bytes: int, packed: bool) -> bytes:
        """Encode chunk ``index``; raises the element's ``TypeError``/``OverflowError``, or
        :class:`CallSettled` if the call was settled meanwhile (its input released)."""
        numbers = self.numbers
        if numbers is None:
            raise CallSettled()
        start, end = self.bounds[index]
        whole = end - start == len(numbers)
        head = b'{"jsonrpc":"2.0","id":%d,"method":"%s","params":' % (rid, self.method.encode())
        body: Optional[bytes] = None
        if packed:
            if whole:
                body = _convert.encode_packed(numbers)
            else:
                # A big input is converted to u32s once (one C-level pass over the list, no
                # chunk copies); each chunk's base64 is cut from that array.
                if not self._packed_whole_tried:
                    self._packed_whole = _convert.pack_u32(numbers)
                    self._packed_whole_tried = True
                packed_whole = self._packed_whole
                if packed_whole is not None:
                    body = binascii.b2a_base64(memoryview(packed_whole)[start:end], newline=False)
                else:
                    body = _convert.encode_packed(numbers[start:end])
        sent_packed = body is not None
        if body is not None:
            prefix, suffix = head + b'{"numbersPacked":"', b'"}}'
        else:
            chunk = numbers if whole else numbers[start:end]
            prefix, suffix = head + b'{"numbers":', b"}}"
            try:
                body = _convert.encode_chunk(chunk, max_frame_bytes - len(prefix) - len(suffix))
            except _convert.ElementError as bad:
                raise _convert.element_error(start + bad.index, bad.value, bad.reason) from None
        with self.lock:
            self._packed_parts[index] = sent_packed
        length = len(prefix) + len(body) + len(suffix)
        return b"".join((frame_header(length), prefix, body, suffix))

    def part_failed(self, index: int, exc: BaseException) -> None:
        """The local scan found a bad element in chunk ``index`` (nothing was sent for it)."""
        self._record(index, error=exc)

    def on_result(self, index: int, result: Any) -> None:
        start, end = self.bounds[index]
        if self._packed_parts.get(index):
            data = _convert.decode_packed_bytes(
                result.get("squaresPacked") if type(result) is dict else None, end - start
            )
            if data is None:
                raise ProtocolError(
                    f"worker answered a packed calculate_squares chunk of {end - start} numbers "
                    f"without {end - start} packed squares: {result!r:.120}"
                )
            self._record(index, result=data)
            return
        if type(result) is not list or len(result) != end - start:
            raise ProtocolError(
                f"worker answered a calculate_squares chunk of {end - start} numbers with "
                f"{type(result).__name__} of length "
                f"{len(result) if isinstance(result, list) else 'n/a'}"
            )
        self._record(index, result=result)

    def on_error(self, index: int, error: Dict[str, Any]) -> None:
        self._record(index, error=self.translate_error(index, error))

    def translate_error(self, index: int, error: Dict[str, Any]) -> BaseException:
        start, end = self.bounds[index]
        return squares_error(error, self.numbers, start, end)

    def _record(
        self,
        index: int,
        result: Union[List[int], bytes, None] = None,
        error: Optional[BaseException] = None,
    ) -> None:
        with self.lock:
            if not self._mark_finished(index):
                return
            if error is not None:
                self._errors[index] = error
            else:
                self._results[index] = result
            parts = len(self.bounds)
            while self._prefix < parts and self._finished[self._prefix]:
                self._prefix += 1
            first_error = min(self._errors) if self._errors else None
            if first_error is not None and first_error < self._prefix:
                outcome: Any = self._errors[first_error]
                failed = True
            elif self._prefix == parts:
                failed = False
                outcome = self._results
            else:
                return
            self._claimed = True
        if failed:
            self._settle(exc=outcome)
        else:  # assembled outside the lock: ~50 ms for 1,000,000 squares
            self._settle(result=_assemble(outcome))

    def unfinished_parts(self) -> List[int]:
        """Chunks still needing a reply; none past a chunk known to hold a bad element."""
        parts = super().unfinished_parts()
        with self.lock:
            if self._errors:
                first_error = min(self._errors)
                parts = [i for i in parts if i < first_error]
        return parts

    def release_payload(self) -> None:
        self.numbers = None
        self._packed_whole = None
        self._results = []


def squares_error(
    error: Dict[str, Any], numbers: Optional[Sequence[Any]], start: int, end: int
) -> BaseException:
    """The exception for an error reply to the ``calculate_squares`` request that carried
    ``numbers[start:end]``: PyO3's ``TypeError``/``OverflowError`` naming the element for a bad
    element, else a ``WorkerError`` (or a ``ProtocolError`` for a nonsensical refusal)."""
    data = error.get("data")
    if error["code"] != ErrorCode.INVALID_PARAMS or not isinstance(data, dict):
        if error["code"] == ErrorCode.REQUEST_CANCELLED:
            return WorkerError(f"the worker cancelled the {Method.CALCULATE_SQUARES.value} request")
        return error_from_reply(error, Method.CALCULATE_SQUARES.value)
    reason = data.get("reason")
    if reason == Reason.NOT_AN_ARRAY:
        return _convert.element_error(start, None, reason)
    position = data.get("index")
    if (
        reason not in (Reason.NOT_AN_INTEGER, Reason.NEGATIVE, Reason.TOO_LARGE)
        or type(position) is not int
        or not 0 <= position < end - start
    ):
        return ProtocolError(f"worker refused a well-formed calculate_squares request: {error}")
    value = numbers[start + position] if numbers is not None else None
    return _convert.element_error(start + position, value, reason)


class SmallCall:
    """The lean form of a one-request blocking ``calculate_squares`` (see
    ``Worker._small_call``): no Future, no chunk bookkeeping. It is the owner of its request on
    the connection; whichever thread reads the reply records the outcome here and opens
    :attr:`event` (a held lock released once)."""

    __slots__ = ("packed", "count", "outcome", "failed", "lost", "event")

    def __init__(self, packed: bool, count: int) -> None:
        self.packed = packed
        self.count = count
        self.outcome: Any = None  # the squares (list or packed bytes), or the error object
        self.failed = False  # outcome is a JSON-RPC error object
        self.lost: Optional[WorkerError] = None  # the connection ended without a reply
        self.event = threading.Lock()
        self.event.acquire()

    def is_done(self) -> bool:
        return self.event.locked() is False

    def on_result(self, index: int, result: Any) -> None:
        if self.packed:
            data = _convert.decode_packed_bytes(
                result.get("squaresPacked") if type(result) is dict else None, self.count
            )
            if data is None:
                raise ProtocolError(
                    f"worker answered a packed calculate_squares request of {self.count} numbers "
                    f"without {self.count} packed squares: {result!r:.120}"
                )
            self.outcome = data
        else:
            if type(result) is not list or len(result) != self.count:
                raise ProtocolError(
                    f"worker answered a calculate_squares request of {self.count} numbers with "
                    f"{type(result).__name__} of length "
                    f"{len(result) if isinstance(result, list) else 'n/a'}"
                )
            self.outcome = result
        self._open()

    def on_error(self, index: int, error: Dict[str, Any]) -> None:
        self.outcome, self.failed = error, True
        self._open()

    def on_lost(self, conn: Connection, error: WorkerError) -> None:
        self.lost = error
        self._open()

    def take_lost(self) -> WorkerError:
        lost, self.lost = self.lost, None
        assert lost is not None
        return lost

    def _open(self) -> None:
        try:
            self.event.release()
        except RuntimeError:
            pass  # a second reply (a cancelled request answered late): already open


def _assemble(parts: List[Union[List[int], bytes, None]]) -> List[int]:
    """The squares of all parts, in order, as one list.

    Packed parts are concatenated and converted to ints in one C-level pass (``array('Q')``
    ``.tolist()``), which is cheaper than a list per part and then their concatenation.
    """
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, bytes):
            return _convert.squares_from_bytes(only)
        return only if only is not None else []
    if all(isinstance(part, bytes) for part in parts):
        return _convert.squares_from_bytes(b"".join(parts))  # type: ignore[arg-type]
    squares: List[int] = []
    for part in parts:
        squares.extend(_convert.squares_from_bytes(part) if isinstance(part, bytes) else part or ())
    return squares
