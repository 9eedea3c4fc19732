"""The method table: one entry per RPC method (and per encoding of its arrays) that builds requests, chunks inputs,
checks replies and translates errors. Adding a method is one entry here plus its public function."""

from __future__ import annotations

import json
import logging
from array import array
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _convert, _jsonrpc, _shm
from ._errors import ProtocolError, WorkerError
from ._protocol import ENCODING_JSON, ENCODING_PACKED, ENCODING_SHM, ErrorCode, Method, Reason

logger = logging.getLogger(__name__)

Part = Union[List[int], bytes, bool]  # a chunk's decoded squares: ints, little-endian u64s (packed), True (in out)

_ENVELOPE_BYTES = 128  # room kept in a frame for the envelope around a chunk's array
SHM_MIN = 8192  # shm only for chunks of at least this many numbers (below, packed: no setup cost)


class ArrayEncoding:
    """How one encoding carries a chunk of u32s and its per-element results."""

    def __init__(self, name: str, param: str, result: Optional[str], in_bytes: float, out_bytes: float,
                 chunk: int = 32768) -> None:
        self.name, self.chunk = name, chunk  # elements per request unless chunk_size says (bench_chunks.py)
        self.param_head = b'{"%s":' % param.encode()
        self.result = result  # None: the result is the JSON array itself
        self.in_bytes = in_bytes  # the most one element takes in a request, on the wire
        self.out_bytes = out_bytes  # the most one result element takes in a reply

    def encode(self, chunk: _convert.NumberSequence, max_bytes: int) -> Optional[List[bytes]]:
        """The params of a chunk as buffers, or None if this encoding cannot carry it."""
        if self.name == ENCODING_PACKED:
            packed = _convert.encode_packed(chunk)
            return None if packed is None else [self.param_head, b'"', packed, b'"}}']
        return [self.param_head, _convert.encode_chunk(chunk.tolist() if type(chunk) is memoryview else chunk, max_bytes),
                b"}}"]

    def decode(self, method: str, result: Any, count: int, held: Optional[_shm.Segment] = None,
               into: Optional[memoryview] = None) -> Part:
        """A chunk's squares, or, given ``into`` (the caller's ``out`` bytes for them), written there (then True)."""
        if self.name == ENCODING_SHM:
            ref = result.get(self.result) if type(result) is dict else None
            if held is None or type(ref) is not dict or ref.get("count") != count \
                    or ref.get("offset") != _shm.squares_offset(count):
                raise ProtocolError(f"worker answered an shm {method} chunk of {count} numbers with {result!r:.120}")
            return held.squares(count, into)
        if self.result is not None:
            data = _convert.decode_packed_bytes(result.get(self.result) if type(result) is dict else None, count)
            if data is None:
                raise ProtocolError(f"worker answered a packed {method} chunk of {count} numbers without "
                                    f"{count} packed results: {result!r:.120}")
            return data if into is None else _convert.put_u64(into, data)
        if type(result) is not list or len(result) != count:
            raise ProtocolError(f"worker answered a {method} chunk of {count} numbers with {type(result).__name__} of "
                                f"length {len(result) if isinstance(result, list) else 'n/a'}")
        return result if into is None else _convert.put_u64(into, array("Q", result), little=False)


PACKED = ArrayEncoding(ENCODING_PACKED, "numbersPacked", "squaresPacked", 16 / 3, 32 / 3)
JSON = ArrayEncoding(ENCODING_JSON, "numbers", None, _convert.MAX_ELEMENT_BYTES, _convert.MAX_SQUARE_BYTES)
# 2,097,152 numbers: a 24 MiB segment, and a chunk that falls back to packed still fits 64 MiB.
SHM = ArrayEncoding(ENCODING_SHM, "numbersShm", "squaresShm", 0, 0, 1 << 21)
ENCODINGS = {e.name: e for e in (SHM, PACKED, JSON)}


class RpcMethod:
    """A method whose params and result pass as they are: one request, no chunks (members as ArrayMethod's)."""

    encodings: Tuple[ArrayEncoding, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name

    def plan(self, wanted: int, frame_limit: int, our_limit: int) -> int:
        return 1  # elements per chunk: the params are one element

    def encoding(self, wanted: Sequence[str], offered: Sequence[str]) -> ArrayEncoding:
        """The first of ``wanted`` that this method has and the worker ``offered``, else JSON."""
        usable = [ENCODINGS[name] for name in wanted if name in offered]  # ``wanted``: checked names (Options)
        return next((encoding for encoding in usable if encoding in self.encodings), JSON)

    def count(self, params: Any) -> int:
        return 1

    def body(self, rid: int, params: Any, encoding: ArrayEncoding, limit: int,
             pool: Optional[_shm.Pool] = None, pieces: bool = False) -> Tuple[List[bytes], ArrayEncoding, Optional[_shm.Segment]]:
        return [_jsonrpc.request(rid, self.name, params)], encoding, None

    def decode(self, encoding: ArrayEncoding, result: Any, count: int, held: Optional[_shm.Segment] = None,
               into: Optional[memoryview] = None) -> Any:
        return result

    def error(self, error: Dict[str, Any], params: Any = None, start: int = 0, end: int = 1) -> BaseException:
        """The exception for an error reply (``-32800``: the worker cancelled it)."""
        if error["code"] == ErrorCode.REQUEST_CANCELLED:
            return WorkerError(f"the worker cancelled the {self.name} request")
        return _jsonrpc.error_from_reply(error, self.name)

    def assemble(self, parts: Sequence[Any], pieces: bool = False, out: Any = None) -> Any:
        return parts[0]


class ArrayMethod(RpcMethod):
    """A method of ``{"numbers": [u32...]}`` answering a value per element: big inputs go in chunks, joined."""

    def __init__(self, name: str, encodings: Tuple[ArrayEncoding, ...]) -> None:
        super().__init__(name)
        self.encodings = encodings
        self._in_bytes = max(e.in_bytes for e in encodings)
        self._out_bytes = max(e.out_bytes for e in encodings)
        self._head = _jsonrpc.request_head(0, name).replace(b'"id":0', b'"id":%d')

    def plan(self, wanted: int, frame_limit: int, our_limit: int) -> int:
        """Elements per chunk: at most ``wanted``, request and reply within the limits in any encoding."""
        room_in = (frame_limit - _ENVELOPE_BYTES) / self._in_bytes
        room_out = (our_limit - _ENVELOPE_BYTES) / self._out_bytes
        return max(1, min(wanted, int(room_in), int(room_out)))

    def count(self, numbers: _convert.NumberSequence) -> int:
        return len(numbers)

    def body(self, rid: int, chunk: _convert.NumberSequence, encoding: ArrayEncoding, limit: int,
             pool: Optional[_shm.Pool] = None, pieces: bool = False) -> Tuple[List[bytes], ArrayEncoding, Optional[_shm.Segment]]:
        """A chunk's request as buffers, in ``encoding`` or else packed/JSON, the one used, and the segment it holds
        until answered; ``pieces``: converted a piece at a time (an event loop gets the GIL between)."""
        head = self._head % rid
        room = limit - len(head) - 16
        if encoding is SHM:
            encoding, held = PACKED, None
            if pool is not None and len(chunk) >= SHM_MIN:
                try:
                    held = pool.acquire(len(chunk))
                    return [head, SHM.param_head, json.dumps(held.write(chunk, pieces=pieces)).encode(), b"}}"], SHM, held
                except _shm.ShmUnavailable as exc:  # this chunk and the connection's next go packed
                    stop_shm(pool, str(exc))
                except (TypeError, OverflowError, ValueError):  # a bad element: packed/JSON names it
                    pool.release(held)  # type: ignore[arg-type]  # acquire raises ShmUnavailable only
        params = encoding.encode(chunk, room) if encoding is not JSON else None
        if params is None:  # JSON carries any chunk (the worker names bad elements)
            encoding, params = JSON, JSON.encode(chunk, room)
        return [head, *params], encoding, None  # type: ignore[misc]

    def decode(self, encoding: ArrayEncoding, result: Any, count: int, held: Optional[_shm.Segment] = None,
               into: Optional[memoryview] = None) -> Part:
        return encoding.decode(self.name, result, count, held, into)

    def error(self, error: Dict[str, Any], numbers: Optional[Sequence[Any]] = None, start: int = 0, end: int = 1) -> BaseException:
        """The exception for an error reply to ``numbers[start:end]``: PyO3's for a bad element, else a WorkerError."""
        data = error.get("data")
        if error["code"] != ErrorCode.INVALID_PARAMS or not isinstance(data, dict):
            return super().error(error)
        reason, position = data.get("reason"), data.get("index")
        if reason == Reason.NOT_AN_ARRAY:
            return _convert.element_error(start, None, reason)
        if reason not in (Reason.NOT_AN_INTEGER, Reason.NEGATIVE, Reason.TOO_LARGE) \
                or type(position) is not int or not 0 <= position < end - start:
            return ProtocolError(f"worker refused a well-formed {self.name} request: {error}")
        value = numbers[start + position] if numbers is not None else None
        return _convert.element_error(start + position, value, reason)

    def assemble(self, parts: Sequence[Part], pieces: bool = False, out: Any = None) -> Any:
        """The chunks' results as one list (packed parts converted at once, or by part in ``pieces``), or ``out``."""
        if out is not None:
            return out
        if not pieces and all(type(part) is bytes for part in parts):
            return _convert.squares_from_bytes(b"".join(parts))  # type: ignore[arg-type]  # one part: no copy
        if len(parts) == 1 and type(parts[0]) is list:
            return parts[0]
        joined: List[int] = []
        for part in parts:
            joined.extend(_convert.squares_from_bytes(part) if isinstance(part, bytes) else part)  # type: ignore[arg-type]
        return joined


def stop_shm(pool: Optional[_shm.Pool], why: str) -> None:
    """The connection uses no more shm (its chunks go packed), logged once."""
    if pool is not None and not pool.closed:
        logger.info("my_module stops using shared memory on this connection: %s", why)
        pool.close()


def refused_shm(encoding: ArrayEncoding, error: Dict[str, Any]) -> bool:
    data = error.get("data")
    return encoding is SHM and isinstance(data, dict) and data.get("reason") == Reason.INVALID_SHM


CALCULATE_SQUARES = ArrayMethod(Method.CALCULATE_SQUARES.value, (SHM, PACKED, JSON))
INITIALIZE = RpcMethod(Method.INITIALIZE.value)
SHUTDOWN = RpcMethod(Method.SHUTDOWN.value)
