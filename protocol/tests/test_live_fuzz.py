"""Generated frames against a live worker: every reply schema-valid, matched to its request, and
the worker still serving at the end.

Hypothesis writes streams of frames — valid requests, notifications, batches, broken requests,
random JSON, byte-mutated and truncated bodies, invalid UTF-8, deep nesting, oversized frames —
glues them together and splits the stream at random points, then checks what the worker writes
back against what the reference worker (reference_worker.py beside this file, correct by the
conformance suite) would answer: the same number of reply frames, each reply with the expected
id and the same result or error code (and the same error data where SPEC.md fixes it), every
frame valid against schemas/outgoing.json and each result against its method's schema. Every
stream ends with a known request whose exact answer must come: the worker kept serving.

The worker is ``.build/release/squares-worker``, or the command in ``CONFORMANCE_WORKER``
(e.g. ``python3 protocol/tests/reference_worker.py``, to check this test itself). The number of
examples is bounded for CI (about 30 s); ``LIVE_FUZZ_EXAMPLES=N`` runs N per test instead, and
shrinks a failing example to a minimal one.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import random
import shlex
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st

TESTS = Path(__file__).resolve().parent
PROTOCOL = TESTS.parent
ROOT = PROTOCOL.parent


def load_module(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(PROTOCOL))
import conformance  # noqa: E402  (the package protocol/conformance/)
reference = load_module("reference_worker", TESTS / "reference_worker.py")

MAX_FRAME_BYTES = 1 << 20  # small enough that an oversized frame is cheap to send
WORKER_ARGS = ["--max-frame-bytes", str(MAX_FRAME_BYTES), "--log-level", "critical"]
REPLY_TIMEOUT = 20.0  # seconds for a stream's replies (a 30,000-number request included)
EXAMPLES = int(os.environ.get("LIVE_FUZZ_EXAMPLES", "0"))
U32 = 2**32 - 1
VALIDATOR = conformance.Validator(PROTOCOL / "schemas")
# The reference's request logic, used as the model of what must come back.
MODEL = reference.Worker(reference.Options(reference.parse_args(WORKER_ARGS)))


def worker_command() -> list[str]:
    configured = os.environ.get("CONFORMANCE_WORKER")
    if configured:
        return shlex.split(configured)
    built = ROOT / ".build" / "release" / "squares-worker"
    if not built.exists():
        pytest.skip(f"{built} is not built (make worker) and CONFORMANCE_WORKER is not set")
    return [str(built)]


# --- Generating frames ---------------------------------------------------------------------

def to_json(value: Any, spaced: bool = False) -> str:
    """JSON text; Decimals as written (ids like 1.0 and 1E+400), strings ASCII-escaped so that
    a lone surrogate is written as its escape (the only way JSON can hold one)."""
    comma, colon = (", ", ": ") if spaced else (",", ":")
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + comma.join(to_json(item, spaced) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + comma.join(json.dumps(key) + colon + to_json(item, spaced)
                                for key, item in value.items()) + "}"
    raise TypeError(type(value))


class Frame:
    """A frame body and what kind of generated frame it is (for the failure report)."""

    def __init__(self, body: bytes, kind: str) -> None:
        self.body = body
        self.kind = kind

    def framed(self) -> bytes:
        return len(self.body).to_bytes(4, "big") + self.body

    def __repr__(self) -> str:  # a 300 KB body would drown Hypothesis's report
        shown = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"Frame({self.kind}, {len(self.body)} bytes: {shown!r})"

    def _repr_pretty_(self, printer, cycle) -> None:  # Hypothesis's pretty-printer
        printer.text(repr(self))


ids = st.one_of(
    st.integers(-2**70, 2**70), st.text(max_size=6), st.none(),
    st.sampled_from(["1.0", "1E+400", "-0.5", "1.50"]).map(Decimal))
numbers = st.one_of(
    st.lists(st.integers(0, U32), max_size=30),
    st.lists(st.sampled_from([0, 1, 9, 10, 99999999, 100000000, U32]), max_size=30))
bad_elements = st.one_of(
    st.integers(-2**40, -1), st.integers(U32 + 1, 2**80), st.just(Decimal("2.0")),
    st.just(Decimal("1e3")), st.text(max_size=3), st.booleans(), st.none(), st.just([1]))
bad_numbers = st.tuples(numbers, bad_elements, numbers).map(lambda t: t[0] + [t[1]] + t[2])


def packed(values: list[int]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}I", *values)).decode()


squares_params = st.one_of(
    numbers.map(lambda n: {"numbers": n}),
    numbers.map(lambda n: [n]),
    numbers.map(lambda n: {"numbersPacked": packed(n)}),
    bad_numbers.map(lambda n: {"numbers": n}),
    bad_numbers.map(lambda n: [n]),
    st.text(alphabet="AQB/+=w", max_size=12).map(lambda t: {"numbersPacked": t}),
    st.sampled_from([{}, [], [[1], [2]], [5], {"numbers": 5}, {"numbers": [1], "numbersPacked": ""},
                     {"numbersPacked": 5}, {"nums": [1]}]))
# shutdown is left out: it ends the stream (a test of its own elsewhere).
methods_and_params = st.one_of(
    st.tuples(st.just("calculate_squares"), squares_params),
    st.tuples(st.just("initialize"), st.sampled_from([None, {}, [], {"clientInfo": {"name": "x"}}])),
    st.tuples(st.just("$/cancel"), ids.map(lambda i: {"id": i})),
    st.tuples(st.sampled_from(["test/sleep", "nope", "", "rpc.x", "calculate_squares "]),
              st.sampled_from([None, {}, {"ms": 1}])))


@st.composite
def requests(draw, notification: bool | None = None) -> dict:
    method, params = draw(methods_and_params)
    message: dict = {"jsonrpc": "2.0"}
    if not (draw(st.booleans()) if notification is None else notification):
        message["id"] = draw(ids)
    message["method"] = method
    if params is not None:
        message["params"] = params
    return message


@st.composite
def broken_requests(draw) -> dict:
    message = draw(requests())
    breakage = draw(st.sampled_from(["jsonrpc", "no-jsonrpc", "method", "params", "id"]))
    if breakage == "jsonrpc":
        message["jsonrpc"] = draw(st.sampled_from(["1.0", Decimal("2.0"), 2, None, "2.00"]))
    elif breakage == "no-jsonrpc":
        del message["jsonrpc"]
    elif breakage == "method":
        message["method"] = draw(st.sampled_from([1, None, [], {}]))
    elif breakage == "params":
        message["params"] = draw(st.sampled_from([None, 1, "x", True]))
    else:
        message["id"] = draw(st.sampled_from([True, [], {}, [1]]))
    return message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=5)
    | st.sampled_from([Decimal("1.5"), Decimal("-0"), Decimal("1E+3")]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12)
messages = st.one_of(requests(), broken_requests(), json_values)


def text_frame(kind: str):
    def make(value_and_spacing) -> Frame:
        value, spaced = value_and_spacing
        return Frame(to_json(value, spaced).encode(), kind)
    return make


@st.composite
def mutated(draw) -> Frame:
    body = bytearray(to_json(draw(requests(notification=False))).encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        if operation == "flip" and at < len(body):
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif operation == "delete":
            del body[at:at + draw(st.integers(1, 4))]
        else:
            body[at:at] = body[max(0, at - 8):at]
    return Frame(bytes(body), "mutated")


@st.composite
def truncated(draw) -> Frame:
    body = to_json(draw(requests())).encode()
    return Frame(body[:draw(st.integers(0, len(body) - 1))], "truncated")


@st.composite
def invalid_utf8(draw) -> Frame:
    bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80",
                                b"\x80", b"\xef\xbb\xbf"]))
    body = to_json({"jsonrpc": "2.0", "id": 1, "method": "calculate_squares",
                    "params": {"numbers": ["@"]}}).encode()
    where = draw(st.sampled_from(["string", "start", "end"]))
    if where == "string":
        body = body.replace(b"@", bad)
    elif where == "start":
        body = bad + body
    else:
        body = body + bad
    return Frame(body, "invalid-utf8")


@st.composite
def deep(draw) -> Frame:
    depth = draw(st.sampled_from([255, 256, 257, 300, 5000]))
    shape = draw(st.sampled_from(["arrays", "objects", "unclosed", "in-request"]))
    if shape == "arrays":
        body = "[" * depth + "]" * depth
    elif shape == "objects":
        body = '{"a":' * depth + "1" + "}" * depth
    elif shape == "unclosed":
        body = "[" * depth
    else:
        body = ('{"jsonrpc":"2.0","id":7,"method":"calculate_squares","params":{"numbers":'
                + "[" * depth + "]" * depth + "}}")
    return Frame(body.encode(), f"deep-{shape}-{depth}")


@st.composite
def big(draw) -> Frame:
    """Past the worker's 256 KiB parallel-decode threshold, under the frame limit."""
    generator = random.Random(draw(st.integers(0, 2**32)))
    values = [generator.getrandbits(32) for _ in range(30_000)]
    if draw(st.booleans()):
        values[generator.randrange(len(values))] = draw(st.sampled_from([-1, U32 + 1]))
    body = to_json({"jsonrpc": "2.0", "id": draw(ids), "method": "calculate_squares",
                    "params": {"numbers": values}}).encode()
    return Frame(body, "big")


oversized = st.integers(1, 3000).map(
    lambda extra: Frame(b"[" * (MAX_FRAME_BYTES + extra), "oversized"))

frames = st.one_of(
    st.tuples(requests(), st.booleans()).map(text_frame("request")),
    st.tuples(broken_requests(), st.booleans()).map(text_frame("broken")),
    st.tuples(json_values, st.booleans()).map(text_frame("random-json")),
    st.tuples(st.lists(messages, max_size=5), st.booleans()).map(text_frame("batch")),
    mutated(), truncated(), invalid_utf8(), deep(),
    st.binary(max_size=40).map(lambda b: Frame(b, "random-bytes")))
rare_frames = st.one_of(big(), oversized)


@st.composite
def streams(draw) -> list[Frame]:
    chosen = draw(st.lists(frames, min_size=1, max_size=10))
    if draw(st.integers(0, 9)) == 0:
        chosen.insert(draw(st.integers(0, len(chosen))), draw(rare_frames))
    return chosen


def cut(data: bytes, fractions: list[float]) -> list[bytes]:
    points = sorted({int(f * len(data)) for f in fractions} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


# --- What must come back -------------------------------------------------------------------

@dataclass
class Expected:
    """One reply frame the model predicts: a response, or a batch of them."""
    responses: list[dict]
    methods: list[str | None]
    is_batch: bool
    source: Frame
    # Ids that a $/cancel of the stream names: a request with one of them may answer -32800
    # instead (SPEC.md §6), even one that would fail: it may be cancelled before it runs, and a
    # cancel anywhere in a batch may name a request of the same batch.
    cancelled: set


def model_replies(frame: Frame, cancelled: set) -> tuple[Expected | None, bool]:
    """The reply frame the reference worker writes for `frame` (None: none), and whether the
    frame asks for shutdown."""
    if len(frame.body) > MAX_FRAME_BYTES:
        error = reference.error_object(reference.FRAME_TOO_LARGE, "Frame too large", {
            "frameBytes": len(frame.body), "maxFrameBytes": MAX_FRAME_BYTES})
        return Expected([{"jsonrpc": "2.0", "id": None, "error": error}], [None], False, frame, cancelled), False
    try:
        message = reference.parse_frame(frame.body)
    except reference.ParseError:
        error = reference.error_object(reference.PARSE_ERROR, "Parse error")
        return Expected([{"jsonrpc": "2.0", "id": None, "error": error}], [None], False, frame, cancelled), False
    if isinstance(message, list) and not message:
        error = reference.error_object(reference.INVALID_REQUEST, "Invalid Request")
        return Expected([{"jsonrpc": "2.0", "id": None, "error": error}], [None], False, frame, cancelled), False
    entries = message if isinstance(message, list) else [message]
    calls = [MODEL.classify(entry) for entry in entries]
    shutdown = any(call.get("method") == "shutdown" and reference.shutdown_params_ok(call)
                   for call in calls)
    replies, methods = [], []
    for call in calls:
        text = MODEL.run_call(call)
        if text is not None:
            replies.append(conformance.loads(text))
            methods.append(call.get("method") if "error" not in call else None)
    if not replies:
        return None, shutdown
    return Expected(replies, methods, isinstance(message, list), frame, cancelled), shutdown


def id_key(value: Any) -> tuple:
    """Ids compare by JSON type and value; a lone surrogate may come back as U+FFFD (SPEC.md §3)."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, Decimal):
        return ("fraction", value)
    if isinstance(value, str):
        return ("string", "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value))
    return ("other", conformance.dumps(value))


# Error codes whose data SPEC.md fixes: the worker must send exactly the reference's data.
EXACT_DATA = {reference.INVALID_PARAMS, reference.METHOD_NOT_FOUND, reference.FRAME_TOO_LARGE}


def response_problems(want: dict, got: Any, method: str | None, cancelled: set) -> list[str]:
    if not isinstance(got, dict):
        return [f"expected a response object, got {conformance.short(got, 100)}"]
    problems = []
    if id_key(got.get("id", "<none>")) != id_key(want["id"]):
        problems.append(f"id {conformance.short(got.get('id', '<none>'), 60)}, "
                        f"expected {conformance.short(want['id'], 60)}")
    error = got.get("error")
    if (isinstance(error, dict) and error.get("code") == reference.REQUEST_CANCELLED
            and id_key(want["id"]) in cancelled):
        return problems
    if "error" in want:
        error = got.get("error")
        if not isinstance(error, dict):
            return problems + [f"expected error {want['error']['code']}, got a result"]
        if error.get("code") != want["error"]["code"]:
            problems.append(f"error code {error.get('code')}, expected {want['error']['code']}")
        elif error["code"] in EXACT_DATA and not conformance.json_equal(
                error.get("data", "<none>"), want["error"].get("data", "<none>")):
            problems.append(f"error data {conformance.short(error.get('data', '<none>'), 100)}, "
                            f"expected {conformance.short(want['error'].get('data'), 100)}")
        return problems
    if "result" not in got:
        return problems + [f"expected a result, got error {conformance.short(got.get('error'), 100)}"]
    if method == "initialize":  # its result names the worker: checked by its schema only
        return problems + VALIDATOR.errors(got["result"], "initialize.result.json")[:3]
    difference = conformance.first_difference(want["result"], got["result"], "result")
    if difference:
        problems.append(difference)
    return problems


def frame_problems(expected: Expected, got: Any) -> list[str]:
    if not expected.is_batch:
        return response_problems(expected.responses[0], got, expected.methods[0], expected.cancelled)
    if not isinstance(got, list):
        return ["expected a batch reply (an array)"]
    if len(got) != len(expected.responses):
        return [f"expected {len(expected.responses)} batch entries, got {len(got)}"]
    return [f"[{index}] {problem}"
            for index, (want, item, method) in enumerate(zip(expected.responses, got, expected.methods))
            for problem in response_problems(want, item, method, expected.cancelled)]


def schema_problems(reply: Any, expected: Expected) -> list[str]:
    """The frame against outgoing.json, and each result against its method's result schema."""
    problems = VALIDATOR.errors(reply, "outgoing.json")[:3]
    items = reply if isinstance(reply, list) else [reply]
    for item, method in zip(items, expected.methods):
        if isinstance(item, dict) and "result" in item and method:
            name = conformance.method_schema(method, "result")
            if (VALIDATOR.directory / name).is_file():
                problems += VALIDATOR.errors(item["result"], name)[:3]
    return problems


def match_replies(expected: list[Expected], replies: list[Any]) -> list[str]:
    """Each reply frame paired with its own expected frame (replies come in any order: a
    bipartite matching, so equal-looking expectations cannot steal each other's replies), then
    checked against the schemas."""
    if len(replies) != len(expected):
        return [f"expected {len(expected)} reply frames, got {len(replies)}"]
    fits = [[not frame_problems(want, got) for want in expected] for got in replies]
    owner: dict[int, int] = {}

    def assign(reply: int, seen: set[int]) -> bool:
        for want in range(len(expected)):
            if fits[reply][want] and want not in seen:
                seen.add(want)
                if want not in owner or assign(owner[want], seen):
                    owner[want] = reply
                    return True
        return False

    problems = []
    for reply in range(len(replies)):
        if not assign(reply, set()):
            closest = min((frame_problems(want, replies[reply]) for want in expected), key=len)
            problems.append(f"reply {conformance.short(replies[reply], 200)} matches no request: "
                            f"closest: {'; '.join(closest)}")
    for want in range(len(expected)):
        if want not in owner:
            source = expected[want].source
            problems.append(f"no reply for the {source.kind} frame {source.body[:120]!r}")
        else:
            problems += [f"schema: {problem}"
                         for problem in schema_problems(replies[owner[want]], expected[want])]
    return problems


def sentinel(serial: int) -> tuple[Frame, Expected]:
    frame = Frame(to_json({"jsonrpc": "2.0", "id": f"last-{serial}", "method": "calculate_squares",
                           "params": {"numbers": [serial, U32]}}).encode(), "final request")
    reply = {"jsonrpc": "2.0", "id": f"last-{serial}", "result": [serial * serial, U32 * U32]}
    return frame, Expected([reply], ["calculate_squares"], False, frame, set())


def model_id_key(value: Any) -> tuple:
    """`id_key` of an id as the reference parses it (numbers keep their text)."""
    if isinstance(value, reference.RawInt):
        return id_key(int(value))
    if isinstance(value, reference.RawFraction):
        return id_key(Decimal(value.text))
    return id_key(value)


def cancel_targets(chosen: list[Frame]) -> set:
    targets = set()
    for frame in chosen:
        if len(frame.body) > MAX_FRAME_BYTES:
            continue
        try:
            message = reference.parse_frame(frame.body)
        except reference.ParseError:
            continue
        for entry in message if isinstance(message, list) else [message]:
            if isinstance(entry, dict) and entry.get("method") == "$/cancel":
                target = reference.cancel_target(entry.get("params"))
                if target is not reference._NO_TARGET:
                    targets.add(model_id_key(target))
    return targets


def predict(chosen: list[Frame]) -> list[Expected]:
    cancelled = cancel_targets(chosen)
    expected = []
    for frame in chosen:
        reply, shutdown = model_replies(frame, cancelled)
        assume(not shutdown)
        if reply is not None:
            expected.append(reply)
    return expected


def decoded(frames: list[bytes]) -> tuple[list[Any], list[str]]:
    problems: list[str] = []
    return conformance.decode_frames(frames, problems), problems


def check(expected: list[Expected], replies: list[Any]) -> list[str]:
    problems = [f"schema: {problem}" for reply in replies
                for problem in VALIDATOR.errors(reply, "outgoing.json")[:3]]
    return problems or match_replies(expected, replies)


# --- The tests -----------------------------------------------------------------------------

# Shrinking re-runs workers for minutes: off in CI (the failing example is printed as found),
# on for long runs.
SETTINGS = dict(deadline=None,
                phases=list(Phase) if EXAMPLES else [Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example, HealthCheck.filter_too_much])


@settings(max_examples=EXAMPLES or 40, **SETTINGS)
@given(chosen=streams(), fractions=st.lists(st.floats(0, 1), max_size=6),
       tail=st.sampled_from(["", "", "", "header", "body"]))
def test_a_fresh_worker_answers_every_generated_frame_then_exits(chosen, fractions, tail):
    """Each stream to a new worker, stdin closed after it: the exact replies, then exit 0 (or 1
    when the stream ends inside a frame, after answering everything before it)."""
    expected = predict(chosen)
    last, last_expected = sentinel(1)
    stream = b"".join(frame.framed() for frame in chosen + [last])
    if tail == "header":
        stream += b"\x00\x00"
    elif tail == "body":
        stream += b"\x00\x00\x00\x10{\"jsonrpc\""
    note(f"frames: {[(f.kind, f.body[:80]) for f in chosen]}")
    process = subprocess.Popen(worker_command() + WORKER_ARGS, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    reader = conformance.FrameReader(process.stdout)
    reader.start()
    try:
        for piece in cut(stream, fractions):
            process.stdin.write(piece)
            process.stdin.flush()
        process.stdin.close()
        code = process.wait(timeout=REPLY_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit within {REPLY_TIMEOUT}s of the end of its input "
                    f"({len(reader.frames)} reply frames had come)")
    finally:
        conformance.kill_group(process)
        process.wait()
        reader.join(5)
        process.stdout.close()
    assert code == (1 if tail else 0), f"exit status {code}"
    assert not reader.trailing, f"stdout ended inside a frame: {reader.trailing[:60]!r}"
    replies, problems = decoded(reader.frames)
    problems += check(expected + [last_expected], replies)
    assert not problems, "\n".join(problems)


class LiveWorker:
    """One worker for a whole test, fed stream after stream."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(worker_command() + WORKER_ARGS, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        self.reader = conformance.FrameReader(self.process.stdout)
        self.reader.start()
        self.taken = 0  # reply frames already checked
        self.streams = 0

    def exchange(self, data: list[bytes], count: int) -> list[bytes]:
        for piece in data:
            self.process.stdin.write(piece)
            self.process.stdin.flush()
        wanted = self.taken + count
        if not self.reader.wait_for(wanted, time.monotonic() + REPLY_TIMEOUT):
            pytest.fail(f"the worker stopped answering: {len(self.reader.frames) - self.taken} of "
                        f"{count} reply frames came within {REPLY_TIMEOUT}s "
                        f"(exit status {self.process.poll()})")
        replies = self.reader.frames[self.taken:wanted]
        self.taken = wanted
        return replies

    def close(self) -> tuple[int | None, int]:
        """Shuts the worker down the documented way; its exit status and any unexpected frames."""
        try:
            self.process.stdin.write(Frame(b'{"jsonrpc":"2.0","id":"bye","method":"shutdown"}', "").framed())
            self.process.stdin.close()
            code = self.process.wait(timeout=REPLY_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            code = None
        finally:
            conformance.kill_group(self.process)
            self.process.wait()
            self.reader.join(5)
            self.process.stdout.close()
        return code, len(self.reader.frames) - self.taken - 1


@pytest.fixture(scope="module")
def live_worker():
    worker = LiveWorker()
    yield worker
    code, extra = worker.close()
    assert code == 0, f"after {worker.streams} streams the worker exited with {code} on shutdown"
    assert extra == 0, f"{extra} reply frames came that no request asked for"


@settings(max_examples=EXAMPLES or 80, **SETTINGS)
@given(chosen=streams(), fractions=st.lists(st.floats(0, 1), max_size=6))
def test_one_worker_keeps_serving_stream_after_stream(live_worker, chosen, fractions):
    """The same worker through every example: nothing a stream holds breaks the next one."""
    expected = predict(chosen)
    live_worker.streams += 1
    last, last_expected = sentinel(live_worker.streams)
    note(f"frames: {[(f.kind, f.body[:80]) for f in chosen]}")
    stream = b"".join(frame.framed() for frame in chosen + [last])
    replies, problems = decoded(live_worker.exchange(cut(stream, fractions), len(expected) + 1))
    problems += check(expected + [last_expected], replies)
    assert not problems, "\n".join(problems)
