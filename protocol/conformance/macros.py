"""The vector format's number macros and its error type."""

from __future__ import annotations

from typing import Any


class VectorError(Exception):
    """A case file that does not follow the vector format."""


def expand_macros(value: Any) -> Any:
    """``{"$range": [a, b]}`` -> [a, ..., b-1]; ``{"$squares": [a, b]}`` -> their squares."""
    if isinstance(value, list):
        return [expand_macros(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("$range", "$squares"):
            (name, bounds), = value.items()
            numbers = range(*bounds)
            return list(numbers) if name == "$range" else [n * n for n in numbers]
        return {key: expand_macros(item) for key, item in value.items()}
    return value
