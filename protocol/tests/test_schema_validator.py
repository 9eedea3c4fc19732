"""The runner's own JSON Schema validator (``conformance.schema``) against the ``jsonschema`` library.

The runner keeps its hand-written validator so that it needs nothing but Python; these tests hold
it to the reference implementation of draft 2020-12: every schema in schemas/, given every message
the vectors send (and each batch entry, each request's params, each expected result), then a set
of deliberately wrong messages, then random JSON values, gives the same verdict — valid or not —
as ``jsonschema``. ``jsonschema`` is a test tool (installed by ``make venv``), never the runner's.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

jsonschema = pytest.importorskip("jsonschema", reason="the cross-check needs jsonschema (make venv installs it)")
referencing = pytest.importorskip("referencing")

PROTOCOL = Path(__file__).resolve().parent.parent
SCHEMAS = PROTOCOL / "schemas"
sys.path.insert(0, str(PROTOCOL))
import conformance  # noqa: E402  (the package protocol/conformance/)

NAMES = sorted(path.name for path in SCHEMAS.glob("*.json"))
OURS = conformance.Validator(SCHEMAS)


def library_validators() -> dict[str, Any]:
    """One Draft 2020-12 validator per schema file, each file registered under its name (its
    ``$id``), so that ``$ref``s between files resolve as the runner resolves them."""
    documents = {name: json.loads((SCHEMAS / name).read_text(encoding="utf-8")) for name in NAMES}
    registry = referencing.Registry().with_resources(
        (name, referencing.Resource.from_contents(document, default_specification=referencing.jsonschema.DRAFT202012))
        for name, document in documents.items())
    return {name: jsonschema.Draft202012Validator(document, registry=registry) for name, document in documents.items()}


LIBRARY = library_validators()


def disagreements(value: Any) -> list[str]:
    """The schemas on which the two validators give different verdicts for ``value``."""
    found = []
    for name in NAMES:
        ours = not OURS.errors(value, name)
        theirs = LIBRARY[name].is_valid(value)
        if ours != theirs:
            found.append(f"{name}: runner says {'valid' if ours else 'invalid'}, jsonschema "
                         f"{'valid' if theirs else 'invalid'}, for {conformance.short(value, 300)}")
    return found


def vector_values() -> Iterator[Any]:
    """Every JSON value the vectors send, the parts a schema describes on their own, and every
    result the vectors expect."""
    for case in conformance.load_cases(PROTOCOL / "vectors"):
        for step in case.steps:
            sent = step.sent_value
            if sent is None:
                continue
            yield sent
            for message in sent if isinstance(sent, list) else [sent]:
                if isinstance(message, dict) and "params" in message:
                    yield message["params"]
                if isinstance(message, dict) and isinstance(message.get("params"), dict) \
                        and "numbersShm" in message["params"]:
                    yield message["params"]["numbersShm"]
                if sent is not message:
                    yield message
        for item in case.expect:
            for entry in item.get("batch", [item]) if isinstance(item, dict) else []:
                if "result" in entry:
                    yield conformance.expand_macros(entry["result"])


def shrunk(value: Any) -> Any:
    """``value`` with every array of more than 1,000 elements cut to its first and last 500: the
    vectors' million-number arrays take ``jsonschema`` about a minute, and no schema counts an
    array's elements past a handful (checked below), so the verdicts are the same."""
    if isinstance(value, list):
        kept = value if len(value) <= 1000 else value[:500] + value[-500:]
        return [shrunk(item) for item in kept]
    if isinstance(value, dict):
        return {key: shrunk(item) for key, item in value.items()}
    return value


def item_counts(schema: Any) -> Iterator[int]:
    if isinstance(schema, dict):
        for key, item in schema.items():
            if key in ("minItems", "maxItems"):
                yield item
            yield from item_counts(item)
    elif isinstance(schema, list):
        for item in schema:
            yield from item_counts(item)


def distinct(values: Iterator[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for value in values:
        seen.setdefault(conformance.dumps(value), value)
    return list(seen.values())


def test_every_schema_gives_the_library_verdict_on_every_vector_message():
    counts = [count for name in NAMES for count in item_counts(json.loads((SCHEMAS / name).read_text(encoding="utf-8")))]
    assert max(counts) < 500, "a schema counts array elements past what shrunk() keeps"
    values = distinct(shrunk(value) for value in vector_values())
    assert len(values) > 300, "the vectors hold fewer messages than expected: is the loader broken?"
    problems = [problem for value in values for problem in disagreements(value)]
    assert problems == [], "\n".join(problems[:20])


# Valid messages of every kind on the wire, each then broken one member at a time.
VALID = [
    {"jsonrpc": "2.0", "id": 1, "method": "calculate_squares", "params": {"numbers": [0, 1, 4294967295]}},
    {"jsonrpc": "2.0", "id": "a", "method": "calculate_squares", "params": [[1, 2]]},
    {"jsonrpc": "2.0", "id": None, "method": "calculate_squares", "params": {"numbersPacked": "AQAAAAIAAAD/////"}},
    {"jsonrpc": "2.0", "id": 2, "method": "calculate_squares",
     "params": {"numbersShm": {"pid": 10, "fd": 3, "name": "p-x", "count": 3}}},
    {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"shmPrefix": "my-prefix."}},
    {"jsonrpc": "2.0", "id": 4, "method": "shutdown"},
    {"jsonrpc": "2.0", "method": "$/cancel", "params": {"id": 1}},
    {"jsonrpc": "2.0", "id": 5, "method": "test/sleep", "params": {"ms": 10}},
    {"jsonrpc": "2.0", "id": 1, "result": [0, 1, 18446744065119617025]},
    {"jsonrpc": "2.0", "id": 1, "result": {"squaresPacked": "AQAAAAAAAAAEAAAAAAAAAAEAAAD+////"}},
    {"jsonrpc": "2.0", "id": 1, "result": {"squaresShm": {"offset": 16, "count": 3}}},
    {"jsonrpc": "2.0", "id": 1, "result": None},
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "Frame too large",
                                            "data": {"frameBytes": 100, "maxFrameBytes": 10}}},
    {"jsonrpc": "2.0", "id": 7, "error": {"code": -32602, "message": "Invalid params",
                                         "data": {"index": 1, "reason": "negative"}}},
    {"jsonrpc": "2.0", "id": 8, "error": {"code": -32601, "message": "Method not found", "data": {"method": "x"}}},
    {"jsonrpc": "2.0", "id": 9, "error": {"code": -32800, "message": "Request cancelled"}},
]
WRONG_VALUES = [None, True, False, 0, -1, Decimal("1.5"), Decimal("2.0"), 2**32, 2**64, "", "x" * 300,
                "2.0", [], {}, [None], [-1], [Decimal("0.5")], {"x": 1}]


def broken(value: Any, depth: int = 0) -> Iterator[Any]:
    """``value`` with one member or element left out or replaced by a value of another kind,
    down to three levels deep."""
    if depth > 2:
        return
    if isinstance(value, dict):
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for wrong in WRONG_VALUES:
                yield {**value, key: wrong}
            for inner in broken(value[key], depth + 1):
                yield {**value, key: inner}
        yield {**value, "unexpected": 1}
    elif isinstance(value, list):
        for index in range(len(value)):
            for wrong in WRONG_VALUES:
                yield value[:index] + [wrong] + value[index + 1:]
            for inner in broken(value[index], depth + 1):
                yield value[:index] + [inner] + value[index + 1:]
        yield value + value[:1]


def test_deliberately_wrong_messages_get_the_library_verdict():
    values = distinct(message for valid in VALID for message in [valid, [valid], *broken(valid)])
    refused = sum(1 for value in values if OURS.errors(value, "incoming.json") and OURS.errors(value, "outgoing.json"))
    assert refused > len(values) // 2, f"only {refused} of {len(values)} mutations are wrong messages"
    problems = [problem for value in values for problem in disagreements(value)]
    assert problems == [], "\n".join(problems[:20])


KEYS = ["jsonrpc", "id", "method", "params", "result", "error", "code", "message", "data", "numbers",
        "numbersPacked", "numbersShm", "pid", "fd", "name", "count", "offset", "shmPrefix", "ms",
        "index", "reason", "frameBytes", "maxFrameBytes", "squaresPacked", "squaresShm", "x"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.sampled_from(["2.0", "calculate_squares", "initialize", "shutdown", "$/cancel", "test/sleep",
                     "negative", "too_large", "AQAAAA==", "p-x", "", "x" * 300]),
    st.text(max_size=8))
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_random_values_get_the_library_verdict(value):
    assert disagreements(value) == []
