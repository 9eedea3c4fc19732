"""The argument codec on its own: fast paths, their fallbacks, and the PyO3-order scan."""

from __future__ import annotations

import base64
import json
from array import array
from decimal import Decimal

import pytest

from my_module import _convert, _jsonrpc
from my_module._protocol import MAX_NUMBER


def compact(message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def test_an_int_list_is_compact_json() -> None:
    data = _convert.encode_chunk([0, 1, MAX_NUMBER], 1000)
    assert data == b"[0,1,4294967295]"
    assert json.loads(data) == [0, 1, MAX_NUMBER]


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ([True, False, 2], b"[1,0,2]"),  # bools become ints, as PyO3 reads them
        ((1, 2), b"[1,2]"),  # tuples take the JSON encoder
        ([1.5], b"[1.5]"),  # sent as is: the worker names the index
        (["7"], b'["7"]'),
        ([[1]], b"[[1]]"),
    ],
)
def test_non_int_lists_take_the_json_path(chunk, expected) -> None:
    assert _convert.encode_chunk(chunk, 1000).replace(b" ", b"") == expected


@pytest.mark.parametrize(
    ("chunk", "index", "reason"),
    [
        ([1, True, "x"], 2, "not_an_integer"),  # bools present: the local scan runs
        ([True, -1, "x"], 1, "negative"),
        ([float("nan")], 0, "not_an_integer"),
        ([1, 10**5000], 1, "too_large"),
    ],
)
def test_local_scan_reports_the_first_bad_element(chunk, index, reason) -> None:
    with pytest.raises(_convert.ElementError) as info:
        _convert.encode_chunk(chunk, 10**6)
    assert (info.value.index, info.value.reason) == (index, reason)


def test_packed_round_trip() -> None:
    numbers = [0, 1, 2**31, MAX_NUMBER, True]
    encoded = _convert.encode_packed(numbers)
    assert array("I", base64.b64decode(encoded)).tolist() == [0, 1, 2**31, MAX_NUMBER, 1]
    squares = base64.b64encode(array("Q", [n * n for n in numbers])).decode()
    assert _convert.squares_from_bytes(_convert.decode_packed_bytes(squares, 5)) == [0, 1, 2**62, MAX_NUMBER**2, 1]


@pytest.mark.parametrize("bad", [[-1], [MAX_NUMBER + 1], [1.0], ["1"], [None], [Decimal("4.5")]])
def test_packed_refuses_what_pyo3_refuses(bad) -> None:
    assert _convert.encode_packed(bad) is None


@pytest.mark.parametrize("text", ["AAAA", "not base64!", 5, None, "AAAAAAAAAAAAAAA="])
def test_packed_squares_of_the_wrong_size_or_type_are_refused(text) -> None:
    assert _convert.decode_packed_bytes(text, 1) is None


def test_loads_reads_a_big_packed_result_whole() -> None:
    text = base64.b64encode(bytes(range(256)) * 40).decode()
    message = _jsonrpc.loads(compact({"jsonrpc": "2.0", "id": 3, "result": {"squaresPacked": text}}))
    assert message["id"] == 3
    assert message["result"]["squaresPacked"] == text


def test_loads_reads_escapes_and_other_shapes_as_json_loads_does() -> None:
    text = "AB/C" * 2000
    escaped = compact({"jsonrpc": "2.0", "id": 1, "result": {"squaresPacked": text}}).replace(b"/", b"\\/")
    assert _jsonrpc.loads(escaped)["result"]["squaresPacked"] == text
    in_error = compact({"jsonrpc": "2.0", "id": 1,
                        "error": {"code": 1, "message": "m", "data": {"squaresPacked": text}}})
    assert _jsonrpc.loads(in_error)["error"]["data"]["squaresPacked"] == text
    plain = compact({"jsonrpc": "2.0", "id": 1, "result": list(range(2000))})
    assert _jsonrpc.loads(plain)["result"] == list(range(2000))
    with pytest.raises(ValueError):
        _jsonrpc.loads(plain + b"x")  # json's own error, trailing data included
