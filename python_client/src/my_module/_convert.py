"""From the caller's argument to JSON arrays on the wire, and from the worker's validation
errors back to the exceptions a PyO3 ``Vec<u32>`` argument raises.

The happy path has no Python-level loop per element: the argument becomes a list or tuple
with C-level calls (``list()``, ``.tolist()``), each chunk is encoded in C (``repr`` of a list
of ints, else the JSON encoder), and the worker validates every element. Python looks at
elements one by one only when the JSON encoder refuses a chunk (an element that is not an
``int``: a numpy scalar, a float NaN, ``Decimal``...) or when the encoded text holds
``true``/``false``: then :func:`coerce_chunk` converts the chunk the way PyO3 does, element by
element, and raises for the first bad one.

``bool``: PyO3's ``u32`` extraction calls ``PyLong_AsLong``, and ``bool`` is an ``int``
subclass, so PyO3 accepts ``True`` as 1 and ``False`` as 0. So does this module (JSON would
carry them as ``true``/``false``, which the worker rightly refuses, so they are converted to
integers here).

Deliberate differences from PyO3, which only takes a sequence: any iterable is accepted
(generators, sets, ``array.array``, numpy arrays via ``.tolist()``), and ``bytes``/
``bytearray`` are refused like ``str`` (PyO3 would read them as small integers) because a
byte string passed here is almost surely a mistake.
"""

from __future__ import annotations

import binascii
import json
import operator
import reprlib
import sys
from array import array
from collections.abc import Iterable, Mapping
from typing import Any, List, NoReturn, Optional, Sequence, Union

from ._protocol import MAX_NUMBER, Reason

ARGUMENT = "numbers"

NumberSequence = Union[List[Any], "tuple[Any, ...]"]

# One encoder, built once: compact separators, and allow_nan=False because NaN/Infinity
# are not JSON (the worker would answer a parse error for the whole frame).
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

_short_repr = reprlib.Repr()
_short_repr.maxstring = 40
_short_repr.maxother = 40
_short_repr.maxlong = 40


def as_sequence(numbers: Any) -> NumberSequence:
    """Return ``numbers`` as a list or tuple (no copy for those), without looking at elements.

    Raises ``TypeError`` for ``str``, ``bytes``, ``bytearray``, a mapping, ``None`` or
    anything else that is not iterable.
    """
    kind = type(numbers)
    if kind is list or kind is tuple:
        return numbers  # type: ignore[no-any-return]
    if isinstance(numbers, (str, bytes, bytearray)):
        raise TypeError(
            f"argument '{ARGUMENT}': can't extract '{kind.__name__}' to a sequence of integers"
        )
    if isinstance(numbers, Mapping):
        raise TypeError(
            f"argument '{ARGUMENT}': '{kind.__name__}' object is a mapping, "
            f"not a sequence of integers"
        )
    if isinstance(numbers, (list, tuple)):
        return numbers  # subclasses: the JSON encoder and slicing handle them as is
    # numpy arrays, array.array, memoryview: .tolist() builds plain ints in C, and numpy is
    # never imported here.
    tolist = getattr(kind, "tolist", None)
    if tolist is not None and callable(tolist):
        converted = numbers.tolist()
        if isinstance(converted, list):
            return converted
        raise TypeError(
            f"argument '{ARGUMENT}': '{kind.__name__}' object (its tolist() gave "
            f"'{type(converted).__name__}') is not a sequence of integers"
        )
    if not isinstance(numbers, Iterable):
        raise TypeError(f"argument '{ARGUMENT}': '{kind.__name__}' object is not iterable")
    return list(numbers)


def element_error(index: int, value: Any, reason: str) -> Exception:
    """The exception PyO3 would raise for element ``index`` (holding ``value``) of the argument.

    ``reason`` is the worker's ``error.data.reason``. Returns (does not raise) a
    ``TypeError`` or an ``OverflowError`` naming the index.
    """
    shown = _shown(value)
    if reason == Reason.NEGATIVE:
        return OverflowError(
            f"argument '{ARGUMENT}': element {index} ({shown}) is negative; "
            f"a u32 is 0 <= n <= {MAX_NUMBER}"
        )
    if reason == Reason.TOO_LARGE:
        return OverflowError(
            f"argument '{ARGUMENT}': element {index} ({shown}) is larger than {MAX_NUMBER}, "
            f"the u32 maximum"
        )
    if reason == Reason.NOT_AN_ARRAY:
        return TypeError(f"argument '{ARGUMENT}': must be a sequence of integers")
    return TypeError(
        f"argument '{ARGUMENT}': element {index} ({shown}) is not an integer: "
        f"'{type(value).__name__}' object cannot be interpreted as an integer"
    )


def _shown(value: Any) -> str:
    try:
        return _short_repr.repr(value)
    except ValueError:  # an int with more digits than sys.get_int_max_str_digits() allows
        return f"<int of {value.bit_length()} bits>" if isinstance(value, int) else "<?>"


class ElementError(Exception):
    """A bad element found by the local scan: ``index`` within the chunk, ``reason``."""

    def __init__(self, index: int, value: Any, reason: str) -> None:
        super().__init__(index, reason)
        self.index = index
        self.value = value
        self.reason = reason


def _bad(index: int, value: Any, reason: str) -> NoReturn:
    raise ElementError(index, value, reason)


def coerce_chunk(chunk: Sequence[Any]) -> List[int]:
    """Convert every element as PyO3's ``u32`` extraction would (the slow path).

    ``operator.index`` accepts exactly what ``PyLong_AsLong`` accepts on Python 3.10+:
    ``int`` and its subclasses (``bool``) and objects with ``__index__`` (numpy integers),
    and refuses floats, strings, ``None``, lists. Raises :class:`ElementError` for the
    first element that is not an integer or is out of the u32 range.
    """
    out: List[int] = []
    append = out.append
    for i, value in enumerate(chunk):
        try:
            n = int(operator.index(value))
        except TypeError:
            _bad(i, value, Reason.NOT_AN_INTEGER)
        if n < 0:
            _bad(i, value, Reason.NEGATIVE)
        if n > MAX_NUMBER:
            _bad(i, value, Reason.TOO_LARGE)
        append(n)
    return out


# Bytes that a list of ints' repr() consists of ("[1, -2, 3]" is also valid JSON).
_INT_LIST_BYTES = b"0123456789-, []"


def encode_chunk(chunk: Sequence[Any], max_bytes: int) -> bytes:
    """Encode a chunk as a JSON array of at most ``max_bytes`` bytes.

    Elements written as JSON integers are sent as is and validated by the worker. Raises
    :class:`ElementError` when the slow path finds a bad element.
    """
    if type(chunk) is list:
        # Fast path: repr() of a list of ints beats the JSON encoder by ~40% (1,000,000 u32:
        # 90 ms against 150 ms on the 2-core reference machine; see benchmarks/README.md),
        # and its ", " separators cost the worker nothing measurable. One C-level pass
        # checks that the text holds nothing but digits, '-', ', ' and brackets: anything
        # else (True, 1.5, 'x', None, np.int64(5), <Color.RED: 7>, [...]) takes the JSON
        # path below. Nested lists of ints pass the check and are valid JSON: the worker
        # reports them as not_an_integer. (An int subclass whose __repr__ prints digits
        # other than its value would be sent as printed: int subclasses must not do that.)
        try:
            data = repr(chunk).encode()
        except (ValueError, RecursionError):  # an int too long to print; deep nesting
            data = b"x"
        if not data.translate(None, _INT_LIST_BYTES) and len(data) <= max_bytes:
            return data
    try:
        text = _encode(chunk)
    except (TypeError, ValueError, RecursionError):
        # Not plain JSON: numpy scalars, NaN, Decimal, circular lists, ints too long to print.
        text = _encode(coerce_chunk(chunk))
    else:
        # Integers print as digits, '-', ',', '[' and ']' only. A 't' or 'f' means true/false
        # (bools, accepted as PyO3 does) or a string/object, refused here in PyO3's order.
        # Each test is one C-level scan of the text, a few percent of the encoding time.
        if "t" in text or "f" in text:
            text = _encode(coerce_chunk(chunk))
    if len(text) > max_bytes:
        # Valid elements take at most 11 bytes each and chunks are sized for that, so an
        # oversized chunk holds an element that is not a u32: find it.
        coerce_chunk(chunk)
        raise ValueError(f"chunk of {len(chunk)} valid elements does not fit {max_bytes} bytes")
    return text.encode("ascii")  # ensure_ascii=True: the text is ASCII


MAX_ELEMENT_BYTES = len(str(MAX_NUMBER)) + 2
"""Bytes one valid element takes in the request's array: its digits, a comma and a space."""

MAX_SQUARE_BYTES = len(str(MAX_NUMBER**2)) + 1
"""Bytes one square takes in the reply's compact array: its digits and a comma."""


# The packed encoding (protocol 1.1): base64 of little-endian u32s in, of u64s out.
_U32 = "I" if array("I").itemsize == 4 else "L"
_BIG_ENDIAN = sys.byteorder == "big"
_ARRAY_TAKES_INT_ONLY_OBJECTS = sys.version_info < (3, 10)


def pack_u32(numbers: Sequence[Any]) -> Optional["array[int]"]:
    """``numbers`` as an ``array`` of little-endian u32s, or None if one element is not a u32.

    ``array('I', ...)`` converts in C exactly what PyO3's extraction accepts (ints, bools,
    ``__index__`` objects in 0..2**32-1) and refuses the rest; it does not say which element,
    so a refused chunk goes the JSON way and the worker names the index.
    """
    try:
        if _ARRAY_TAKES_INT_ONLY_OBJECTS:
            # Before 3.10 array() also takes objects with only __int__ (Decimal(4.5) -> 4),
            # which PyO3 refuses; operator.index refuses them too, still in a C-level loop.
            packed = array(_U32, map(operator.index, numbers))
        else:
            packed = array(_U32, numbers)
    except (TypeError, OverflowError, ValueError):
        return None
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed


def encode_packed(chunk: Sequence[Any]) -> Optional[bytes]:
    """The chunk as ``numbersPacked`` (base64 of little-endian u32s), or None if one element is
    not a u32 (see :func:`pack_u32`). Encoding 1,000,000 numbers this way takes ~26 ms, against
    ~90 ms for ``repr`` and ~150 ms for ``json.dumps``."""
    packed = pack_u32(chunk)
    return None if packed is None else binascii.b2a_base64(packed, newline=False)


Base64Text = Union[str, bytes, bytearray, memoryview]


def _a2b_strict(text: Base64Text) -> bytes:
    # strict_mode (3.11+) refuses anything but canonical base64, and is ~15% faster.
    return binascii.a2b_base64(text, strict_mode=True)  # type: ignore[call-arg,unused-ignore]


def _a2b_lenient(text: Base64Text) -> bytes:
    return binascii.a2b_base64(text)


_a2b = _a2b_strict if sys.version_info >= (3, 11) else _a2b_lenient


def decode_packed_bytes(text: Any, count: int) -> Optional[bytes]:
    """The ``8 * count`` bytes (little-endian u64s) of a ``squaresPacked`` value (str, or bytes
    from :func:`loads_reply`), or None if it is not base64 of exactly ``count`` u64s."""
    if not isinstance(text, (str, bytes, bytearray, memoryview)):
        return None
    try:
        data = _a2b(text)
    except (binascii.Error, ValueError):
        return None
    if len(data) != 8 * count:  # also catches text with stray characters (a2b skips them)
        return None
    return data


def squares_from_bytes(data: bytes) -> List[int]:
    """The list of ints held by ``data``, little-endian u64s (one C-level pass)."""
    squares = array("Q")
    squares.frombytes(data)
    if _BIG_ENDIAN:
        squares.byteswap()
    return squares.tolist()


def decode_packed_squares(text: Any, count: int) -> Optional[List[int]]:
    """The ``count`` squares in a ``squaresPacked`` value (str, or bytes from
    :func:`loads_reply`), or None if it is not one."""
    data = decode_packed_bytes(text, count)
    return None if data is None else squares_from_bytes(data)


_PACKED_KEY = b'"squaresPacked":"'


def loads_reply(body: Union[bytes, bytearray]) -> Any:
    """``json.loads(body)``, without running the JSON scanner over a packed result's base64.

    For a packed reply the base64 text is cut out before parsing and put back (as bytes, which
    :func:`decode_packed_squares` takes) afterwards: for 1,000,000 squares (10.7 MB of base64)
    this saves ~20 ms of ~125 ms per call; the base64 comes back as a ``memoryview`` of ``body``.
    The cut is exact: ``"squaresPacked":"`` with
    unescaped quotes can only be a member name and the start of its string, and base64 holds no
    quote; if the text holds a backslash (an escape) or the member is not where a result puts
    it, the whole body is parsed as usual.
    """
    if len(body) < 4096:
        return json.loads(body)
    start = body.find(_PACKED_KEY)
    if start < 0:
        return json.loads(body)
    start += len(_PACKED_KEY)
    end = body.find(b'"', start)
    if end < 0 or body.find(b"\\", start, end) >= 0:
        return json.loads(body)
    message = json.loads(body[:start] + body[end:])
    result = message.get("result") if type(message) is dict else None
    if type(result) is not dict or result.get("squaresPacked") != "":
        return json.loads(body)
    result["squaresPacked"] = memoryview(body)[start:end]  # no copy of the base64
    return message
