#!/usr/bin/env python3
"""Drive any squares worker through the conformance vectors.

    python3 protocol/conformance.py [--filter REGEX] [--vectors DIR] [--timeout SEC] [--no-skip] -- WORKER...

Each case runs against a fresh worker process: the runner writes the case's frames to the
worker's stdin, reads its stdout frames on a thread, and when the worker has exited (or the
case's time is up: then it is killed and the case fails) it checks every reply frame against
the JSON Schemas in schemas/, the replies against the case's expectations, and the exit status.
Cases needing an encoding the worker's initialize does not list (the shm cases: "shm") are
skipped, counted and with the reason, unless ``--no-skip``. The last line printed is
``N passed, N failed`` (``, N skipped`` when some were); the exit status is 1 if any case failed.

Standard library only. The vector format and the matcher language are described in
README.md beside this file.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
DEFAULT_TIMEOUT = 10.0
STDERR_TAIL_BYTES = 2000


# --- JSON with exact numbers ---------------------------------------------------------------
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


# --- A validator for the JSON Schema subset that schemas/ uses -----------------------------

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


# --- Vectors -------------------------------------------------------------------------------

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


# --- Shared-memory segments (1.2) -----------------------------------------------------------
# A case may declare segments, which the runner makes (memfds, or regular files for negative
# cases) before it starts the worker, and refer to them in its messages with these macros:
#   {"$shm": "a", ...overrides}  -> {"pid": <runner pid>, "fd": <a's fd>, "name": <a's name>,
#                                    "count": <len(a's numbers)>}, members replaced by overrides
#   {"$shmPrefix": "x"}          -> the case's fresh shmPrefix followed by "x"
#   {"$shmName": "a"}, {"$shmFd": "a"}, {"$runnerPid": null}, {"$workerPid": null}
#   {"$omit": null}              -> (as an override of "$shm") leave that member out

SHM_VALUE_MACROS = {"$shmPrefix", "$shmName", "$shmFd", "$runnerPid", "$workerPid"}
SHM_MACROS = SHM_VALUE_MACROS | {"$shm", "$omit"}
SEGMENT_KEYS = {"numbers", "size", "mode", "name", "kind", "sealed"}
# "sealed": the seals a memfd gets once sized and written (as a client seals it): true (the
# default) is F_SEAL_SHRINK, a list names them, false makes the memfd without MFD_ALLOW_SEALING.
SEAL_NAMES = {"shrink": "F_SEAL_SHRINK", "grow": "F_SEAL_GROW", "seal": "F_SEAL_SEAL"}
SEGMENT_FILL = 0xEE  # every byte past the numbers, so that squares never written are seen
SHM_INITIALIZE_ID = "conformance-shm-initialize"
_OMIT = object()


def uses_shm_macros(value: Any) -> bool:
    if isinstance(value, list):
        return any(uses_shm_macros(item) for item in value)
    if isinstance(value, dict):
        return bool(SHM_MACROS & set(value)) or any(uses_shm_macros(v) for v in value.values())
    return False


def squares_offset(count: int) -> int:
    """Where the squares of ``count`` numbers begin in a segment: 4·count rounded up to 8."""
    return 8 * ((count + 1) // 2)


@dataclass
class SegmentSpec:
    key: str
    numbers: list[int]
    size: int | None  # None: exactly what the numbers need
    mode: int
    name: Any  # None: the prefix and the key; a string; or {"$shmPrefix": suffix}
    kind: str  # "memfd" or "file"
    seals: tuple[str, ...] | None = ("shrink",)  # names of SEAL_NAMES; None: not sealable

    def needed_bytes(self) -> int:
        return squares_offset(len(self.numbers)) + 8 * len(self.numbers)


def parse_segments(raw: Any, where: str) -> dict[str, SegmentSpec]:
    if not isinstance(raw, dict) or not raw:
        raise VectorError(f"{where}: segments must be an object of named segments")
    segments = {}
    for key, spec in raw.items():
        if not isinstance(spec, dict) or set(spec) - SEGMENT_KEYS or "numbers" not in spec:
            raise VectorError(f"{where}: segment {key!r} needs 'numbers' and takes only "
                              f"{sorted(SEGMENT_KEYS)}")
        numbers = expand_macros(spec["numbers"])
        if not isinstance(numbers, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 0xFFFFFFFF
                for n in numbers):
            raise VectorError(f"{where}: segment {key!r}: numbers must be u32 integers")
        mode = spec.get("mode", "0600")
        if not isinstance(mode, str) or not re.fullmatch(r"0[0-7]{3}", mode):
            raise VectorError(f"{where}: segment {key!r}: mode is an octal string like \"0600\"")
        kind = spec.get("kind", "memfd")
        if kind not in ("memfd", "file"):
            raise VectorError(f"{where}: segment {key!r}: kind is \"memfd\" or \"file\"")
        size = spec.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise VectorError(f"{where}: segment {key!r}: size is a byte count")
        name = spec.get("name")
        if not (name is None or isinstance(name, str)
                or (isinstance(name, dict) and set(name) == {"$shmPrefix"})):
            raise VectorError(f"{where}: segment {key!r}: name is a string or {{\"$shmPrefix\": S}}")
        sealed = spec.get("sealed", kind == "memfd")
        if kind != "memfd" and "sealed" in spec:
            raise VectorError(f"{where}: segment {key!r}: only a memfd is sealed")
        if sealed is True:
            seals: tuple[str, ...] | None = ("shrink",)
        elif sealed is False:
            seals = None
        elif isinstance(sealed, list) and all(n in SEAL_NAMES for n in sealed) \
                and len(set(sealed)) == len(sealed):
            seals = tuple(sealed)
        else:
            raise VectorError(f"{where}: segment {key!r}: sealed is true, false or a list of "
                              f"{sorted(SEAL_NAMES)}")
        segments[key] = SegmentSpec(key, numbers, size, int(mode, 8), name, kind, seals)
    return segments


@dataclass
class Segment:
    spec: SegmentSpec
    fd: int
    name: str
    initial: bytes


class ShmContext:
    """The segments of one case run and the values its macros stand for."""

    def __init__(self, specs: dict[str, SegmentSpec], prefix: str | None = None,
                 sample: bool = False) -> None:
        self.prefix = prefix or "conformance-" + secrets.token_hex(16) + "-"
        self.runner_pid = os.getpid()
        self.worker_pid: int | None = 2 if sample else None
        self.sample = sample
        self.segments: dict[str, Segment] = {}
        for index, (key, spec) in enumerate(specs.items()):
            name = self.segment_name(spec)
            if sample:  # for schema lookups at load time: nothing is made
                self.segments[key] = Segment(spec, 100 + index, name, b"")
            else:
                try:
                    self.segments[key] = self.make(spec, name)
                except OSError:
                    self.close()
                    raise

    def segment_name(self, spec: SegmentSpec) -> str:
        if spec.name is None:
            return self.prefix + spec.key
        if isinstance(spec.name, dict):
            return self.prefix + str(spec.name["$shmPrefix"])
        return spec.name

    @staticmethod
    def make(spec: SegmentSpec, name: str) -> Segment:
        if spec.kind == "memfd":
            sealing = os.MFD_ALLOW_SEALING if spec.seals is not None else 0
            fd = os.memfd_create(name, os.MFD_CLOEXEC | sealing)
        else:
            handle = tempfile.TemporaryFile()  # a regular file, unlinked, in the temp dir
            fd = os.dup(handle.fileno())
            os.set_inheritable(fd, False)
            handle.close()
        try:
            os.fchmod(fd, spec.mode)
            size = spec.needed_bytes() if spec.size is None else spec.size
            content = bytearray([SEGMENT_FILL]) * size
            packed = struct.pack(f"<{len(spec.numbers)}I", *spec.numbers)
            content[:len(packed)] = packed[:size]
            os.ftruncate(fd, size)
            os.pwrite(fd, bytes(content), 0)
            if spec.kind == "memfd" and spec.seals is not None:
                seals = 0
                for seal in spec.seals:
                    seals |= getattr(fcntl, SEAL_NAMES[seal])
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        except OSError:
            os.close(fd)
            raise
        return Segment(spec, fd, name, bytes(content))

    def close(self) -> None:
        if not self.sample:
            for segment in self.segments.values():
                os.close(segment.fd)
        self.segments = {}

    def segment(self, key: Any) -> Segment:
        if key not in self.segments:
            raise VectorError(f"no segment named {key!r}")
        return self.segments[key]

    def render(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.render(item) for item in value]
        if not isinstance(value, dict):
            return value
        if "$shm" in value:
            segment = self.segment(value["$shm"])
            reference: dict[str, Any] = {"pid": self.runner_pid, "fd": segment.fd,
                                         "name": segment.name, "count": len(segment.spec.numbers)}
            for member, override in value.items():
                if member != "$shm":
                    reference[member] = self.render(override)
            return {member: item for member, item in reference.items() if item is not _OMIT}
        if len(value) == 1:
            (name, arg), = value.items()
            if name == "$omit":
                return _OMIT
            if name == "$shmPrefix":
                return self.prefix + str(arg)
            if name == "$shmName":
                return self.segment(arg).name
            if name == "$shmFd":
                return self.segment(arg).fd
            if name == "$runnerPid":
                return self.runner_pid
            if name == "$workerPid":
                return self.worker_pid
        return {key: self.render(item) for key, item in value.items()}

    def check_after(self, expected: dict[str, Any], problems: list[str]) -> None:
        """``segmentsAfter``: {"a": {"squares": [...]}} or {"a": {"unchanged": true}}."""
        for key, want in expected.items():
            segment = self.segment(key)
            if want.get("unchanged"):
                now = os.pread(segment.fd, len(segment.initial) + 1, 0)
                if now != segment.initial:
                    changed = next((i for i, (a, b) in enumerate(zip(now, segment.initial))
                                    if a != b), min(len(now), len(segment.initial)))
                    problems.append(f"segment {key}: expected unchanged, but byte {changed} "
                                    f"(or its size) changed")
            if "squares" in want:
                squares = expand_macros(want["squares"])
                offset = squares_offset(len(squares))
                data = os.pread(segment.fd, 8 * len(squares), offset)
                if len(data) != 8 * len(squares):
                    problems.append(f"segment {key}: {len(data)} bytes at offset {offset}, "
                                    f"expected {8 * len(squares)}")
                    continue
                got = struct.unpack(f"<{len(squares)}Q", data)
                for index, (a, b) in enumerate(zip(squares, got)):
                    if a != b:
                        problems.append(f"segment {key}: squares[{index}] (byte {offset + 8 * index})"
                                        f": expected {a}, got {b}"
                                        + (" (never written)" if b == int.from_bytes(
                                            bytes([SEGMENT_FILL]) * 8, "little") else ""))
                        break


def text_parts(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        out = []
        for part in spec:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and set(part) == {"repeat", "count"}:
                out.append(part["repeat"] * part["count"])
            else:
                raise VectorError(f"bad text part: {short(part)}")
        return "".join(out)
    raise VectorError(f"bad text: {short(spec)}")


def framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


FRAME_FORMS = {
    "json": lambda arg: framed(dumps(expand_macros(arg)).encode("utf-8")),
    "text": lambda arg: framed(text_parts(arg).encode("utf-8")),
    "body_hex": lambda arg: framed(bytes.fromhex(arg)),
    "raw_hex": lambda arg: bytes.fromhex(arg),
    "raw_text": lambda arg: text_parts(arg).encode("utf-8"),
}
DIRECTIVES = {"sleep_ms", "await_replies", "signal", "close_stdin"}


@dataclass
class Step:
    kind: str  # "bytes", "template" (a JSON value with shm macros, framed at run time) or a directive
    data: Any
    sent_value: Any = None  # the JSON value, when the step sends one (for schema lookups)


def parse_step(item: Any, sample: ShmContext | None = None) -> Step:
    if isinstance(item, dict) and len(item) == 1:
        (key, arg), = item.items()
        if key == "json" and uses_shm_macros(arg):
            return parse_step(arg, sample)
        if key in FRAME_FORMS:
            sent = expand_macros(arg) if key == "json" else None
            if key == "text":
                try:
                    sent = loads(text_parts(arg))
                except (ValueError, RecursionError):
                    sent = None
            return Step("bytes", FRAME_FORMS[key](arg), sent)
        if key in DIRECTIVES:
            return Step(key, arg)
    value = expand_macros(item)
    if uses_shm_macros(value):
        if sample is None:
            raise VectorError(f"shm macros outside a case: {short(value)}")
        return Step("template", value, sample.render(value))
    return Step("bytes", framed(dumps(value).encode("utf-8")), value)


MATCHER_KEYS = {"id", "result", "result_schema", "error_code", "error_message", "data",
                "no_data"}


@dataclass
class Case:
    file: str
    id: str
    description: str
    args: list[str]
    steps: list[Step]
    close_stdin: bool
    expect: list[Any]
    ordered: bool
    exit_code: int
    stderr_nonempty: bool
    timeout: float | None
    segments: dict[str, SegmentSpec] = field(default_factory=dict)
    segments_after: dict[str, Any] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)  # encodings the worker must list
    shm_initialize: bool = False  # the runner sends initialize with a fresh shmPrefix first

    @property
    def name(self) -> str:
        return f"{self.file}/{self.id}"


CASE_KEYS = {"id", "description", "args", "send", "close_stdin", "expect", "ordered",
             "exit_code", "stderr_nonempty", "timeout", "segments", "segmentsAfter", "requires",
             "shm_initialize"}


def check_expectation(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise VectorError(f"{where}: an expectation must be an object")
    if "jsonrpc" in item:
        return
    if set(item) == {"batch"}:
        for index, entry in enumerate(item["batch"]):
            check_expectation(entry, f"{where}.batch[{index}]")
        return
    unknown = set(item) - MATCHER_KEYS
    if unknown or "id" not in item:
        raise VectorError(f"{where}: a matcher needs 'id' and takes only {sorted(MATCHER_KEYS)}"
                          f" (unknown: {sorted(unknown)})")


def load_cases(directory: Path) -> list[Case]:
    cases = []
    files = sorted(directory.glob("*.json"))
    if not files:
        raise VectorError(f"no vector files in {directory}")
    seen = set()
    for path in files:
        document = loads(path.read_text(encoding="utf-8"))
        if set(document) != {"description", "cases"}:
            raise VectorError(f"{path.name}: needs exactly 'description' and 'cases'")
        for raw in document["cases"]:
            unknown = set(raw) - CASE_KEYS
            if unknown or not {"id", "description", "send", "expect"} <= set(raw):
                raise VectorError(f"{path.name}: case {raw.get('id')!r}: bad keys {sorted(unknown)}")
            where = f"{path.stem}/{raw['id']}"
            segments = parse_segments(raw["segments"], where) if "segments" in raw else {}
            sample = ShmContext(segments, "conformance-sample-", sample=True)
            steps = [parse_step(item, sample) for item in raw["send"]]
            uses_shm = bool(segments) or any(step.kind == "template" for step in steps)
            requires = list(raw.get("requires", ["shm"] if uses_shm else []))
            after = raw.get("segmentsAfter", {})
            if not isinstance(after, dict) or set(after) - set(segments) or not all(
                    isinstance(v, dict) and v and set(v) <= {"squares", "unchanged"}
                    for v in after.values()):
                raise VectorError(f"{where}: segmentsAfter maps declared segments to "
                                  f"{{\"squares\": [...]}} or {{\"unchanged\": true}}")
            case = Case(
                file=path.stem, id=raw["id"], description=raw["description"],
                args=list(raw.get("args", [])),
                steps=steps,
                close_stdin=raw.get("close_stdin", True), expect=raw["expect"],
                ordered=raw.get("ordered", False), exit_code=raw.get("exit_code", 0),
                stderr_nonempty=raw.get("stderr_nonempty", False),
                timeout=float(raw["timeout"]) if "timeout" in raw else None,
                segments=segments, segments_after=after, requires=requires,
                shm_initialize=bool(raw.get("shm_initialize", "shm" in requires)))
            if case.name in seen:
                raise VectorError(f"duplicate case {case.name}")
            seen.add(case.name)
            for index, item in enumerate(case.expect):
                check_expectation(item, f"{case.name}.expect[{index}]")
            cases.append(case)
    return cases


# --- Running one case ----------------------------------------------------------------------

class FrameReader(threading.Thread):
    """Splits the worker's stdout into frames as they arrive."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.frames: list[bytes] = []
        self.trailing = b""
        self.changed = threading.Condition()

    def run(self) -> None:
        buffer = bytearray()
        start = 0  # where the next frame begins in buffer
        while True:
            chunk = self.stream.read1(1 << 16)
            if not chunk:
                break
            buffer += chunk
            while len(buffer) - start >= 4:
                size = int.from_bytes(buffer[start:start + 4], "big")
                if len(buffer) - start < 4 + size:
                    break
                with self.changed:
                    self.frames.append(bytes(buffer[start + 4:start + 4 + size]))
                    self.changed.notify_all()
                start += 4 + size
            if start:
                del buffer[:start]
                start = 0
        with self.changed:
            self.trailing = bytes(buffer)
            self.changed.notify_all()

    def wait_for(self, count: int, deadline: float) -> bool:
        with self.changed:
            while len(self.frames) < count and self.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
            return len(self.frames) >= count


class Feeder(threading.Thread):
    """Writes the case's steps to the worker; a worker that stops reading blocks only this."""

    def __init__(self, case: Case, process: subprocess.Popen, reader: FrameReader,
                 deadline: float, shm: ShmContext | None = None) -> None:
        super().__init__(daemon=True)
        self.case, self.process, self.reader, self.deadline = case, process, reader, deadline
        self.shm = shm
        self.notes: list[str] = []
        self.initialized = False  # the runner's own initialize was answered

    def close_stdin(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass

    def steps(self) -> Iterator[Step]:
        extra = 0
        if self.case.shm_initialize:
            # The prefix is armed once initialize is answered: wait for it (SPEC.md section 4).
            yield Step("template", {"jsonrpc": "2.0", "id": SHM_INITIALIZE_ID,
                                    "method": "initialize",
                                    "params": {"shmPrefix": {"$shmPrefix": ""}}})
            yield Step("await_replies", 1)
            self.initialized = True
            extra = 1
        for step in self.case.steps:
            yield Step(step.kind, step.data + extra, step.sent_value) \
                if step.kind == "await_replies" else step

    def run(self) -> None:
        stdin = self.process.stdin
        broken = False
        for step in self.steps():
            if step.kind == "template":
                step = Step("bytes", framed(dumps(self.shm.render(step.data)).encode("utf-8")))
            if step.kind == "bytes":
                if broken:
                    continue
                try:
                    stdin.write(step.data)
                    stdin.flush()
                except (BrokenPipeError, OSError, ValueError):
                    broken = True
                    self.notes.append("the worker closed its stdin before every frame was sent")
            elif step.kind == "sleep_ms":
                time.sleep(step.data / 1000)
            elif step.kind == "await_replies":
                if not self.reader.wait_for(step.data, self.deadline):
                    self.notes.append(f"await_replies {step.data}: only "
                                      f"{len(self.reader.frames)} reply frames came")
                    self.initialized = False
                    return
            elif step.kind == "signal":
                try:
                    self.process.send_signal(getattr(signal, step.data))
                except ProcessLookupError:
                    self.notes.append(f"{step.data}: the worker had already exited")
            elif step.kind == "close_stdin":
                self.close_stdin()
        if self.case.close_stdin:
            self.close_stdin()


@dataclass
class Outcome:
    case: Case
    problems: list[str] = field(default_factory=list)
    replies: list[Any] = field(default_factory=list)
    exit_code: int | None = None
    stderr_tail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit: killed by the runner"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.kill()
    except ProcessLookupError:
        pass


def stop_worker(process: subprocess.Popen, *threads: threading.Thread) -> None:
    """Kills the worker's process group (also anything it left holding its pipes), reaps it,
    joins the threads that fed or read it, and closes its pipes."""
    kill_group(process)
    process.wait()
    for thread in threads:
        thread.join(2)
    for pipe in (process.stdin, process.stdout):
        try:
            pipe.close()
        except OSError:
            pass


def run_case(case: Case, command: list[str], timeout: float, validator: Validator) -> Outcome:
    outcome = Outcome(case)
    timeout = case.timeout or timeout
    started = time.monotonic()
    deadline = started + timeout
    shm: ShmContext | None = None
    if case.segments or case.shm_initialize or "shm" in case.requires:
        try:
            shm = ShmContext(case.segments)
        except OSError as error:
            outcome.problems.append(f"cannot make the case's segments: {error}")
            return outcome
    try:
        return run_case_with(case, command, timeout, validator, outcome, started, deadline, shm)
    finally:
        if shm is not None:
            shm.close()


def run_case_with(case: Case, command: list[str], timeout: float, validator: Validator,
                  outcome: Outcome, started: float, deadline: float,
                  shm: ShmContext | None) -> Outcome:
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(command + case.args, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=stderr,
                                       start_new_session=True)
        except OSError as error:
            outcome.problems.append(f"cannot start the worker {command}: {error}")
            return outcome
        if shm is not None:
            shm.worker_pid = process.pid
        reader = FrameReader(process.stdout)
        reader.start()
        feeder = Feeder(case, process, reader, deadline, shm)
        feeder.start()
        try:
            outcome.exit_code = process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            outcome.problems.append(
                f"timed out after {timeout:g}s: the worker did not exit (killed); "
                f"{len(reader.frames)} reply frames had come")
        finally:
            stop_worker(process, feeder, reader)
        outcome.seconds = time.monotonic() - started
        stderr.seek(0, os.SEEK_END)
        size = stderr.tell()
        stderr.seek(max(0, size - STDERR_TAIL_BYTES))
        outcome.stderr_tail = stderr.read().decode("utf-8", "replace")
        stderr_size = size
    if outcome.problems:  # timed out: the rest would only repeat it
        outcome.problems += feeder.notes
        outcome.replies = decode_frames(reader.frames, [])
        return outcome
    problems = outcome.problems
    if reader.trailing:
        problems.append(f"stdout ended inside a frame: {len(reader.trailing)} bytes after the "
                        f"last whole frame ({reader.trailing[:40]!r})")
    outcome.replies = decode_frames(reader.frames, problems)
    if not problems:
        check_schemas(case, outcome.replies, validator, problems)
        replies = outcome.replies
        if case.shm_initialize:
            replies = check_shm_initialize(replies, problems)
        if not problems:
            check_expectations(case, replies, problems)
    if shm is not None and case.segments_after:
        shm.check_after(case.segments_after, problems)
    if outcome.exit_code != case.exit_code:
        problems.append(f"exit: expected exit status {case.exit_code}, got "
                        f"{describe_exit(outcome.exit_code)}")
    if case.stderr_nonempty and stderr_size == 0:
        problems.append("stderr: expected a log line, the worker wrote nothing to stderr")
    if problems:
        problems += feeder.notes
    return outcome


def check_shm_initialize(replies: list[Any], problems: list[str]) -> list[Any]:
    """The first reply answers the runner's own initialize (with shmPrefix): it must be a
    result listing "shm". The case's expectations are matched against the rest."""
    first = replies[0] if replies else None
    if not (isinstance(first, dict) and json_equal(first.get("id"), SHM_INITIALIZE_ID)):
        problems.append(f"the runner's initialize (id {SHM_INITIALIZE_ID!r}, with shmPrefix) "
                        f"was not answered first: got {short(first) if replies else 'no reply'}")
        return replies
    result = first.get("result")
    if not (isinstance(result, dict) and isinstance(result.get("encodings"), list)
            and "shm" in result["encodings"]):
        problems.append(f"the runner's initialize with shmPrefix: expected a result listing "
                        f"\"shm\" in encodings, got {short(first)}")
    return replies[1:]


def decode_frames(frames: list[bytes], problems: list[str]) -> list[Any]:
    replies = []
    for index, frame in enumerate(frames):
        try:
            replies.append(loads(frame.decode("utf-8")))
        except (UnicodeDecodeError, ValueError) as error:
            problems.append(f"reply frame {index} is not UTF-8 JSON ({error}): {frame[:80]!r}")
            replies.append(frame.decode("utf-8", "replace"))
    return replies


def id_key(value: Any) -> tuple:
    return (type(value).__name__, value if not isinstance(value, Decimal) else value.normalize())


def sent_methods(case: Case) -> dict[tuple, set[str]]:
    """Which method each request id of the case was used for (to validate results)."""
    methods: dict[tuple, set[str]] = {}
    for step in case.steps:
        messages = step.sent_value if isinstance(step.sent_value, list) else [step.sent_value]
        for message in messages:
            if isinstance(message, dict) and "id" in message and isinstance(message.get("method"), str):
                request_id = message["id"]
                if request_id is None or isinstance(request_id, (str, int, Decimal)):
                    methods.setdefault(id_key(request_id), set()).add(message["method"])
    return methods


def check_schemas(case: Case, replies: list[Any], validator: Validator,
                  problems: list[str]) -> None:
    methods = sent_methods(case)
    for index, reply in enumerate(replies):
        for error in validator.errors(reply, "outgoing.json")[:5]:
            problems.append(f"schema: reply frame {index}: {error}")
        for response in (reply if isinstance(reply, list) else [reply]):
            if not isinstance(response, dict) or "result" not in response:
                continue
            names = methods.get(id_key(response.get("id")), set())
            if len(names) != 1:
                continue
            name = method_schema(next(iter(names)), "result")
            if (validator.directory / name).is_file():
                for error in validator.errors(response["result"], name)[:5]:
                    problems.append(f"schema: reply frame {index}: result of "
                                    f"{next(iter(names))}: {error}")


def match(expected: Any, got: Any) -> list[str]:
    """Why ``got`` does not meet ``expected`` (an empty list when it does)."""
    if "jsonrpc" in expected:
        difference = first_difference(expand_macros(expected), got)
        return [f"not the exact reply: {difference}"] if difference else []
    if "batch" in expected:
        entries = expected["batch"]
        if not isinstance(got, list):
            return ["expected a batch reply (a JSON array)"]
        if len(got) != len(entries):
            return [f"expected {len(entries)} batch entries, got {len(got)}"]
        why = []
        for index, (entry, item) in enumerate(zip(entries, got)):
            why += [f"batch[{index}]: {reason}" for reason in match(entry, item)]
        return why
    if not isinstance(got, dict):
        return ["expected a single response object"]
    why = []
    if "id" not in got or not json_equal(expected["id"], got["id"]):
        why.append(f"id: expected {dumps(expected['id'])}, got {short(got.get('id', '<none>'))}")
    wants_error = any(key in expected for key in ("error_code", "error_message", "data", "no_data"))
    if wants_error:
        error = got.get("error")
        if not isinstance(error, dict):
            return why + ["expected an error, got a result"]
        if "error_code" in expected and not json_equal(expected["error_code"], error.get("code")):
            why.append(f"error code: expected {expected['error_code']}, got {error.get('code')}")
        if "error_message" in expected and expected["error_message"] != error.get("message"):
            why.append(f"error message: expected {expected['error_message']!r}, "
                       f"got {error.get('message')!r}")
        if "data" in expected and not json_equal(expected["data"], error.get("data", "<none>")):
            why.append(f"error data: expected {dumps(expected['data'])}, "
                       f"got {short(error.get('data', '<none>'))}")
        if expected.get("no_data") and "data" in error:
            why.append(f"error data: expected none, got {short(error['data'])}")
    elif "result" in expected or "result_schema" in expected:
        if "result" not in got:
            return why + [f"expected a result, got error {short(got.get('error'))}"]
        if "result" in expected:
            difference = first_difference(expand_macros(expected["result"]), got["result"], "result")
            if difference:
                why.append(difference)
        if "result_schema" in expected:
            inline = Validator(HERE / "schemas")
            inline.documents["<inline>"] = expected["result_schema"]
            why += [f"result: {error}" for error in inline.errors(got["result"], "<inline>")]
    return why


def assignments(expect: list[Any], got: list[Any]) -> Iterator[list[int]]:
    """Every way to give each expectation its own reply (replies may come in any order)."""
    def extend(chosen: list[int]) -> Iterator[list[int]]:
        if len(chosen) == len(expect):
            yield chosen
            return
        for index in range(len(got)):
            if index not in chosen and not match(expect[len(chosen)], got[index]):
                yield from extend(chosen + [index])
    return extend([])


def check_expectations(case: Case, replies: list[Any], problems: list[str]) -> None:
    expect = case.expect
    if case.ordered or len(expect) <= 1:
        if len(replies) == len(expect):
            for index, (want, got) in enumerate(zip(expect, replies)):
                problems += [f"reply {index}: {reason}" for reason in match(want, got)]
            return
    elif len(replies) == len(expect) and next(assignments(expect, replies), None) is not None:
        return
    if len(replies) != len(expect):
        problems.append(f"expected {len(expect)} reply frames, got {len(replies)}")
    else:
        problems.append("the replies do not match the expectations in any order")
        for index, want in enumerate(expect):
            best = min((match(want, got) for got in replies), key=len)
            problems.append(f"  expectation {index} (closest reply): {'; '.join(best)}")


# --- Which encodings the worker serves (to skip the cases it cannot pass) ---------------------

def probe_encodings(command: list[str], timeout: float) -> tuple[list[str] | None, str]:
    """The ``encodings`` of the worker's initialize result, or None and why there are none."""
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as error:
        return None, f"cannot start the worker: {error}"
    reader = FrameReader(process.stdout)
    reader.start()
    try:
        body = dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize"}).encode("utf-8")
        try:
            process.stdin.write(framed(body))
            process.stdin.flush()
        except OSError:
            pass
        got = reader.wait_for(1, time.monotonic() + timeout)
    finally:
        stop_worker(process, reader)
    if not got:
        return None, "the worker did not answer initialize"
    try:
        reply = loads(reader.frames[0].decode("utf-8"))
        encodings = reply["result"]["encodings"]
        version = reply["result"].get("protocolVersion")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None, f"initialize was not answered with a result: {reader.frames[0][:200]!r}"
    if not isinstance(encodings, list):
        return None, f"initialize's encodings is not a list: {short(encodings)}"
    return encodings, f"its initialize (protocolVersion {short(version)}) lists encodings " \
                      f"{dumps(encodings)}"


def skip_reasons(cases: list[Case], command: list[str], timeout: float) -> dict[str, str]:
    """Case name -> why it is skipped, for cases needing an encoding the worker does not list
    (or that the runner cannot make here)."""
    needed = {name for case in cases for name in case.requires}
    if not needed:
        return {}
    encodings, described = probe_encodings(command, timeout)
    served = set(encodings or [])
    reasons = {}
    for case in cases:
        missing = [name for name in case.requires if name not in served]
        if missing:
            reasons[case.name] = (f"needs encoding {', '.join(map(json.dumps, missing))}, "
                                  f"which the worker does not serve ({described})")
        elif case.segments and not hasattr(os, "memfd_create"):
            reasons[case.name] = "needs segments, and this Python has no os.memfd_create"
    return reasons


# --- Main ----------------------------------------------------------------------------------

def report(outcome: Outcome, out) -> None:
    case = outcome.case
    print(f"FAIL {case.name}: {case.description}", file=out)
    for problem in outcome.problems:
        print(f"    {problem}", file=out)
    print("    expected replies "
          f"({'in this order' if case.ordered else 'in any order'}), exit status {case.exit_code}:",
          file=out)
    for item in case.expect or ["(none)"]:
        print(f"      {short(item)}", file=out)
    print(f"    got ({describe_exit(outcome.exit_code)}, {outcome.seconds:.2f}s):", file=out)
    for item in outcome.replies or ["(no reply frames)"]:
        print(f"      {short(item)}", file=out)
    tail = outcome.stderr_tail.strip().splitlines()[-10:]
    if tail:
        print("    worker stderr (tail):", file=out)
        for line in tail:
            print(f"      | {line[:300]}", file=out)


def main(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1:]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(
        prog="conformance.py",
        description="Run the protocol conformance vectors against a worker command.",
        usage="%(prog)s [--filter REGEX] [--vectors DIR] [--timeout SEC] -- WORKER_COMMAND...")
    parser.add_argument("--filter", help="run only cases whose name (file/id) matches this regex")
    parser.add_argument("--vectors", type=Path, default=HERE / "vectors",
                        help="directory of case files (default: vectors/ beside this script)")
    parser.add_argument("--schemas", type=Path, default=HERE / "schemas",
                        help="directory of JSON Schemas (default: schemas/ beside this script)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds a case may take before the worker is killed "
                             f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--no-skip", action="store_true",
                        help="fail, rather than skip, a case needing an encoding the worker "
                             "does not list (for a worker that must serve shm)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print passing cases too")
    args = parser.parse_args(own)
    try:
        cases = load_cases(args.vectors)
    except (VectorError, ValueError, OSError) as error:
        print(f"conformance.py: bad vectors: {error}", file=sys.stderr)
        return 2
    if args.filter:
        pattern = re.compile(args.filter)
        cases = [case for case in cases if pattern.search(case.name)]
    if args.list:
        for case in cases:
            print(f"{case.name}: {case.description}")
        return 0
    if not command:
        parser.error("no worker command: put it after --")
    validator = Validator(args.schemas)
    passed = failed = 0
    skipped = skip_reasons(cases, command, args.timeout)
    if skipped:
        by_reason: dict[str, list[str]] = {}
        for name, reason in skipped.items():
            by_reason.setdefault(reason, []).append(name)
        for reason, names in by_reason.items():
            if args.no_skip:
                for name in names:
                    print(f"FAIL {name}: not run (--no-skip): {reason}")
                continue
            print(f"SKIP {len(names)} cases: {reason}")
            if args.verbose:
                for name in names:
                    print(f"skip {name}")
        sys.stdout.flush()
        if args.no_skip:
            failed += len(skipped)
    for case in cases:
        if case.name in skipped:
            continue
        try:
            outcome = run_case(case, command, args.timeout, validator)
        except SchemaError as error:
            print(f"conformance.py: bad schemas: {error}", file=sys.stderr)
            return 2
        if outcome.passed:
            passed += 1
            if args.verbose:
                print(f"ok   {case.name} ({outcome.seconds:.2f}s)")
        else:
            failed += 1
            report(outcome, sys.stdout)
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed"
          + (f", {len(skipped)} skipped" if skipped and not args.no_skip else ""))
    return 1 if failed or not cases else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
