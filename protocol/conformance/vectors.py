"""Loading the cases: steps, expectations and their checks against the vector format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jsonexact import dumps, loads, short
from .macros import VectorError, expand_macros
from .shm import SegmentSpec, ShmContext, parse_segments, uses_shm_macros


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
