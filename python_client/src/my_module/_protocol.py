"""What is said on the wire: method names, error codes, reasons and limits of protocol v1.

This is the one place in the package where these values are written down; every other module
imports them from here, and ``tests/test_protocol_constants.py`` checks them against
``protocol/constants.json``, the language-neutral source of truth.
"""

from __future__ import annotations

import enum

PROTOCOL_VERSION = "1.1"
"""The protocol version this client speaks. A worker with another *major* version is refused;
an older minor version is fine (1.0 lacks the packed encoding, which is then not used)."""

PROTOCOL_MAJOR = int(PROTOCOL_VERSION.split(".")[0])

JSONRPC_VERSION = "2.0"

FRAME_HEADER_BYTES = 4
"""Every frame is a 4-byte unsigned big-endian body length, then the UTF-8 JSON body."""

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
"""The protocol's default frame limit (the worker's ``--max-frame-bytes`` default)."""

MAX_NUMBER = 2**32 - 1
"""The largest valid element: the seed's elements are ``u32``."""


ENCODING_JSON = "json"
"""``params.numbers``: a JSON array of integers; result: a JSON array of the squares."""

ENCODING_PACKED = "packed"
"""Protocol 1.1: ``params.numbersPacked``, padded base64 of the numbers as little-endian u32s;
result ``{"squaresPacked": ...}``, base64 of the squares as little-endian u64s."""


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
