"""A validator for the JSON Schema (draft 2020-12) subset that schemas/ uses: the runner needs
nothing but Python, and protocol/tests check it against the jsonschema library."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from .jsonexact import json_equal, loads, short


class SchemaError(Exception):
    """The schema itself is outside the supported subset or broken."""


ANNOTATIONS = {"$schema", "$id", "title", "description", "$comment", "$defs", "examples"}
TYPES: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, Decimal)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


class Validator:
    """Validates JSON values against the schemas of one directory; ``$ref`` names a file
    there, optionally with a ``#/...`` pointer into it. Integers are values written without
    a fraction or exponent (stricter than 2020-12, on purpose: 2.0 is not an integer here)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.documents: dict[str, Any] = {}

    def document(self, name: str) -> Any:
        if name not in self.documents:
            path = self.directory / name
            if not path.is_file():
                raise SchemaError(f"$ref to a missing schema file: {name}")
            self.documents[name] = loads(path.read_text(encoding="utf-8"))
        return self.documents[name]

    def errors(self, value: Any, name: str) -> list[str]:
        return self._check(value, self.document(name), name, "$")

    def _resolve(self, ref: str, base: str) -> tuple[Any, str]:
        file_part, _, pointer = ref.partition("#")
        name = file_part or base
        schema = self.document(name)
        for token in [t for t in pointer.split("/") if t]:
            token = token.replace("~1", "/").replace("~0", "~")
            try:
                schema = schema[int(token)] if isinstance(schema, list) else schema[token]
            except (KeyError, IndexError, ValueError):
                raise SchemaError(f"unresolvable $ref {ref!r} from {base}") from None
        return schema, name

    def _check(self, value: Any, schema: Any, base: str, where: str) -> list[str]:
        if schema is True:
            return []
        if schema is False:
            return [f"{where}: no value is allowed here"]
        if not isinstance(schema, dict):
            raise SchemaError(f"{base}: a schema must be an object or a boolean")
        errors: list[str] = []
        for keyword, arg in schema.items():
            if keyword in ANNOTATIONS:
                continue
            check = getattr(self, "_kw_" + keyword.lstrip("$"), None)
            if check is None:
                raise SchemaError(f"{base}: keyword {keyword!r} is outside the supported subset")
            errors.extend(check(value, arg, schema, base, where))
        return errors

    def _kw_ref(self, value, arg, schema, base, where):
        target, name = self._resolve(arg, base)
        return self._check(value, target, name, where)

    def _kw_type(self, value, arg, schema, base, where):
        names = arg if isinstance(arg, list) else [arg]
        if any(TYPES[n](value) for n in names):
            return []
        return [f"{where}: expected type {'/'.join(names)}, got {short(value, 80)}"]

    def _kw_const(self, value, arg, schema, base, where):
        return [] if json_equal(value, arg) else [f"{where}: expected {short(arg)}, got {short(value, 80)}"]

    def _kw_enum(self, value, arg, schema, base, where):
        if any(json_equal(value, option) for option in arg):
            return []
        return [f"{where}: expected one of {short(arg)}, got {short(value, 80)}"]

    def _kw_required(self, value, arg, schema, base, where):
        if not isinstance(value, dict):
            return []
        return [f"{where}: missing member {name!r}" for name in arg if name not in value]

    def _kw_properties(self, value, arg, schema, base, where):
        if not isinstance(value, dict):
            return []
        errors = []
        for name, sub in arg.items():
            if name in value:
                errors += self._check(value[name], sub, base, f"{where}.{name}")
        return errors

    def _kw_additionalProperties(self, value, arg, schema, base, where):
        if not isinstance(value, dict):
            return []
        known = schema.get("properties", {})
        errors = []
        for name in value:
            if name in known:
                continue
            if arg is False:
                errors.append(f"{where}: unexpected member {name!r}")
            else:
                errors += self._check(value[name], arg, base, f"{where}.{name}")
        return errors

    def _kw_prefixItems(self, value, arg, schema, base, where):
        if not isinstance(value, list):
            return []
        errors = []
        for index, (item, sub) in enumerate(zip(value, arg)):
            errors += self._check(item, sub, base, f"{where}[{index}]")
        return errors

    def _kw_items(self, value, arg, schema, base, where):
        if not isinstance(value, list):
            return []
        start = len(schema.get("prefixItems", []))
        errors = []
        for index in range(start, len(value)):
            errors += self._check(value[index], arg, base, f"{where}[{index}]")
            if len(errors) > 5:
                break
        return errors

    def _kw_contains(self, value, arg, schema, base, where):
        if not isinstance(value, list) or any(not self._check(item, arg, base, where)
                                              for item in value):
            return []
        return [f"{where}: no item matches {short(arg, 120)}"]

    def _kw_minItems(self, value, arg, schema, base, where):
        ok = not isinstance(value, list) or len(value) >= arg
        return [] if ok else [f"{where}: expected at least {arg} items, got {len(value)}"]

    def _kw_maxItems(self, value, arg, schema, base, where):
        ok = not isinstance(value, list) or len(value) <= arg
        return [] if ok else [f"{where}: expected at most {arg} items, got {len(value)}"]

    def _kw_uniqueItems(self, value, arg, schema, base, where):
        if not arg or not isinstance(value, list):
            return []
        for i, a in enumerate(value):
            if any(json_equal(a, b) for b in value[i + 1:]):
                return [f"{where}: items are not unique ({short(a, 80)} repeats)"]
        return []

    def _kw_minProperties(self, value, arg, schema, base, where):
        ok = not isinstance(value, dict) or len(value) >= arg
        return [] if ok else [f"{where}: expected at least {arg} members"]

    def _kw_maxProperties(self, value, arg, schema, base, where):
        ok = not isinstance(value, dict) or len(value) <= arg
        return [] if ok else [f"{where}: expected at most {arg} members"]

    def _kw_minimum(self, value, arg, schema, base, where):
        ok = not TYPES["number"](value) or value >= arg
        return [] if ok else [f"{where}: {value} is below the minimum {arg}"]

    def _kw_maximum(self, value, arg, schema, base, where):
        ok = not TYPES["number"](value) or value <= arg
        return [] if ok else [f"{where}: {value} is above the maximum {arg}"]

    def _kw_pattern(self, value, arg, schema, base, where):
        ok = not isinstance(value, str) or re.search(arg, value) is not None
        return [] if ok else [f"{where}: {value!r} does not match /{arg}/"]

    def _branches(self, value, arg, base, where) -> list[list[str]]:
        return [self._check(value, sub, base, where) for sub in arg]

    @staticmethod
    def _closest(results: list[list[str]]) -> str:
        best = min((errors for errors in results if errors), key=len, default=[])
        return "; closest alternative: " + "; ".join(best[:3]) if best else ""

    def _kw_anyOf(self, value, arg, schema, base, where):
        results = self._branches(value, arg, base, where)
        if any(not errors for errors in results):
            return []
        return [f"{where}: matches none of {len(arg)} alternatives{self._closest(results)}"]

    def _kw_oneOf(self, value, arg, schema, base, where):
        results = self._branches(value, arg, base, where)
        matched = sum(1 for errors in results if not errors)
        if matched == 1:
            return []
        if matched > 1:
            return [f"{where}: matches {matched} of the oneOf alternatives, not exactly one"]
        return [f"{where}: matches none of {len(arg)} alternatives{self._closest(results)}"]

    def _kw_allOf(self, value, arg, schema, base, where):
        return [error for errors in self._branches(value, arg, base, where) for error in errors]

    def _kw_not(self, value, arg, schema, base, where):
        if self._check(value, arg, base, where):
            return []
        return [f"{where}: matches a schema it must not match ({short(arg, 120)})"]


def method_schema(method: str, part: str) -> str:
    """Schema file of a method's params or result: ``$/cancel`` -> ``cancel.result.json``."""
    return method.replace("$/", "").replace("/", "-") + f".{part}.json"
