"""Exact JSON: integers stay Python ints (no 2**53 limit), other numbers Decimals, so that
the runner tells 1 from 1.0 and true from 1; compact text; equality and the first difference."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any


# Integers stay Python ints (no 2**53 limit); other numbers become Decimal, so that 1.5 and
# 1.50 are equal but 1 and 1.0 are not: the runner can tell an integer from a fraction.

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_refuse_constant)


def loads(text: str) -> Any:
    return _DECODER.decode(text)


def dumps(value: Any) -> str:
    """Compact JSON text; Decimals are written as they were read."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(key, ensure_ascii=False) + ":" + dumps(item)
                              for key, item in value.items()) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality that keeps types apart: true is not 1, and 1 is not 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (int, Decimal, list, dict)) or isinstance(b, (int, Decimal, list, dict)):
        return False
    return type(a) is type(b) and a == b


def first_difference(expected: Any, got: Any, where: str = "$") -> str | None:
    """Where two JSON values first differ, as 'path: expected X, got Y' (None if equal)."""
    if isinstance(expected, list) and isinstance(got, list):
        for index, (a, b) in enumerate(zip(expected, got)):
            found = first_difference(a, b, f"{where}[{index}]")
            if found:
                return found
        if len(expected) != len(got):
            return f"{where}: expected {len(expected)} items, got {len(got)}"
        return None
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in expected:
            if key not in got:
                return f"{where}: missing member {key!r}"
            found = first_difference(expected[key], got[key], f"{where}.{key}")
            if found:
                return found
        extra = [key for key in got if key not in expected]
        return f"{where}: unexpected member {extra[0]!r}" if extra else None
    if json_equal(expected, got):
        return None
    return f"{where}: expected {short(expected, 120)}, got {short(got, 120)}"


def short(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else dumps(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
