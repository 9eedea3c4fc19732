"""The wire's names, codes, reasons and limits (protocol v1), written down only here and
checked against ``protocol/constants.json`` by ``tests/test_protocol_constants.py``."""

from __future__ import annotations

import enum

PROTOCOL_VERSION = "1.2"  # another major version is refused; 1.0 lacks packed, 1.1 shm (both optional)

PROTOCOL_MAJOR = int(PROTOCOL_VERSION.split(".")[0])

JSONRPC_VERSION = "2.0"

FRAME_HEADER_BYTES = 4  # a big-endian u32 body length, then the UTF-8 JSON body

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024  # the worker's --max-frame-bytes default

MAX_NUMBER = 2**32 - 1  # the seed's elements are u32


ENCODING_JSON = "json"  # params.numbers: a JSON array; the result: a JSON array
ENCODING_PACKED = "packed"  # 1.1: base64 of little-endian u32s in, of u64s out (squaresPacked)
ENCODING_SHM = "shm"  # 1.2: numbersShm/squaresShm, a memfd segment (_shm)


class Method(str, enum.Enum):
    """JSON-RPC method names."""

    INITIALIZE = "initialize"
    CALCULATE_SQUARES = "calculate_squares"
    SHUTDOWN = "shutdown"
    CANCEL = "$/cancel"
    TEST_SLEEP = "test/sleep"  # served only by a worker started with --test-methods


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes used by protocol v1 (names as in constants.json's errorCodes)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    REQUEST_CANCELLED = -32800
    FRAME_TOO_LARGE = -32000


class Reason(str, enum.Enum):
    """``error.data.reason`` of an Invalid params reply to ``calculate_squares``."""

    NOT_AN_INTEGER = "not_an_integer"
    NEGATIVE = "negative"
    TOO_LARGE = "too_large"
    NOT_AN_ARRAY = "not_an_array"
    INVALID_SHAPE = "invalid_shape"
    INVALID_PACKED = "invalid_packed"  # 1.1: numbersPacked is not base64 of whole u32s
    INVALID_SHM = "invalid_shm"  # 1.2: numbersShm refused (the client then goes packed)
