"""The conformance runner is itself tested: it must pass a correct worker and catch wrong ones.

The correct worker is reference_worker.py beside this file; its ``--fault`` modes are the
wrong ones. Each fault test runs only the cases that matter for it, so the file stays fast.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import importlib.util
import json
import os
import random
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PROTOCOL = TESTS.parent
RUNNER = PROTOCOL / "conformance.py"
REFERENCE = [sys.executable, str(TESTS / "reference_worker.py")]
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$")


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(PROTOCOL))
import conformance  # noqa: E402  (the package protocol/conformance/)
reference = load_module("reference_worker", TESTS / "reference_worker.py")
CONSTANTS = json.loads((PROTOCOL / "constants.json").read_text(encoding="utf-8"))


def run_suite(*runner_args: str, worker: list[str] = REFERENCE, limit: float = 300):
    completed, passed, failed, skipped, elapsed = run_suite_skipping(*runner_args, worker=worker,
                                                                     limit=limit)
    assert skipped == 0, completed.stdout[-2000:]
    return completed, passed, failed, elapsed


def run_suite_skipping(*runner_args: str, worker: list[str] = REFERENCE, limit: float = 300):
    started = time.monotonic()
    completed = subprocess.run([sys.executable, str(RUNNER), *runner_args, "--", *worker],
                               capture_output=True, text=True, timeout=limit)
    elapsed = time.monotonic() - started
    lines = completed.stdout.strip().splitlines()
    match = SUMMARY.match(lines[-1]) if lines else None
    assert match, f"the last line is not 'N passed, N failed':\n{completed.stdout[-2000:]}\n{completed.stderr}"
    return (completed, int(match.group(1)), int(match.group(2)), int(match.group(3) or 0),
            elapsed)


def case_count(*filter_args: str) -> int:
    listed = subprocess.run([sys.executable, str(RUNNER), "--list", *filter_args],
                            capture_output=True, text=True, check=True)
    return len(listed.stdout.strip().splitlines())


# --- Against the correct worker ------------------------------------------------------------

def test_reference_worker_passes_every_case():
    completed, passed, failed, _ = run_suite()
    assert (passed, failed) == (case_count(), 0), completed.stdout[-4000:]
    assert completed.returncode == 0


def test_a_worker_that_floods_stderr_still_passes_because_stderr_is_drained():
    completed, passed, failed, _ = run_suite("--filter", "^(calculate_squares|framing)/",
                                             worker=REFERENCE + ["--fault", "flood-stderr"])
    assert failed == 0 and passed == case_count("--filter", "^(calculate_squares|framing)/"), \
        completed.stdout[-3000:]


# --- Against deliberately wrong workers ----------------------------------------------------

@pytest.mark.parametrize("fault, selection, caught_case, evidence", [
    ("wrong-squares", "^calculate_squares/", "calculate_squares/max",
     "$.result[0]: expected 18446744065119617025, got 18446744065119617024"),
    ("wrong-squares", "^packed/spec-example$", "packed/spec-example",
     "$.result.squaresPacked: expected AQAAAAAAAAAEAAAAAAAAAAEAAAD+////, got AQAAAAAAAAAEAAAAAAAAAAAAAAD+////"),
    ("missing-error", "^params_errors/", "params_errors/negative", "expected an error, got a result"),
    ("missing-error", "^packed/not-whole-numbers$", "packed/not-whole-numbers",
     "expected an error, got a result"),
    ("wrong-id", "^ids/", "ids/beyond-2-53", "id: expected 12345678901234567890, got 1.2345678901234567E+19"),
    ("exit-at-once", "^calculate_squares/basic$", "calculate_squares/basic",
     "expected 1 reply frames, got 0"),
    ("garbage", "^calculate_squares/basic$", "calculate_squares/basic", "stdout ended inside a frame"),
    ("wrong-squares", "^shm/zero-and-max$", "shm/zero-and-max",
     "segment a: squares[1] (byte 24): expected 18446744065119617025, got 18446744065119617024"),
    ("shm-unwritten", "^shm/spec-example$", "shm/spec-example",
     "segment a: squares[0] (byte 16): expected 1, got 17216961135462248174 (never written)"),
    ("shm-lax-mode", "^shm/mode-0644$", "shm/mode-0644", "segment a: expected unchanged"),
    ("shm-lax-mode", "^shm/foreign-name$", "shm/foreign-name", "expected an error, got a result"),
    ("shm-unsealed", "^shm/unsealed$", "shm/unsealed", "segment a: expected unchanged"),
])
def test_runner_names_the_case_a_wrong_worker_fails(fault, selection, caught_case, evidence):
    completed, passed, failed, _ = run_suite("--filter", selection,
                                             worker=REFERENCE + ["--fault", fault])
    assert completed.returncode != 0
    assert failed >= 1
    assert f"FAIL {caught_case}:" in completed.stdout, completed.stdout[-3000:]
    assert evidence in completed.stdout, completed.stdout[-3000:]


def test_a_worker_without_shm_gets_the_shm_cases_skipped_with_the_reason_not_failed():
    selection = "^(shm|calculate_squares)/"
    completed, passed, failed, skipped, _ = run_suite_skipping(
        "--filter", selection, worker=REFERENCE + ["--fault", "no-shm"])
    shm_cases = case_count("--filter", "^shm/")
    assert (passed, failed, skipped) == (case_count("--filter", "^calculate_squares/"), 0, shm_cases), \
        completed.stdout[-3000:]
    assert completed.returncode == 0
    assert (f'SKIP {shm_cases} cases: needs encoding "shm", which the worker does not serve '
            f'(its initialize (protocolVersion 1.1) lists encodings ["json","packed"])') in completed.stdout
    assert completed.stdout.strip().splitlines()[-1].endswith(f", {shm_cases} skipped")


def test_no_skip_makes_a_case_the_worker_cannot_serve_a_failure():
    completed, passed, failed, skipped, _ = run_suite_skipping(
        "--no-skip", "--filter", "^shm/(spec-example|empty)$", worker=REFERENCE + ["--fault", "no-shm"])
    assert (passed, failed, skipped) == (0, 2, 0), completed.stdout[-3000:]
    assert completed.returncode == 1
    assert 'FAIL shm/spec-example: not run (--no-skip): needs encoding "shm"' in completed.stdout


def test_a_worker_that_does_not_answer_initialize_skips_shm_cases_and_fails_the_rest():
    completed, passed, failed, skipped, _ = run_suite_skipping(
        "--timeout", "2", "--filter", "^(shm/spec-example|calculate_squares/basic)$",
        worker=REFERENCE + ["--fault", "exit-at-once"], limit=60)
    assert (passed, failed, skipped) == (0, 1, 1), completed.stdout[-3000:]
    assert "the worker did not answer initialize" in completed.stdout


def test_a_hanging_worker_fails_within_the_timeout_and_is_killed():
    completed, passed, failed, elapsed = run_suite(
        "--timeout", "1", "--filter", "^(calculate_squares/basic|lifecycle/shutdown-stdin-open)$",
        worker=REFERENCE + ["--fault", "hang"], limit=60)
    assert (passed, failed) == (0, 2)
    assert completed.returncode != 0
    assert "timed out after 1s" in completed.stdout
    assert elapsed < 15, f"two 1 s timeouts took {elapsed:.1f}s"


def test_a_missing_worker_binary_is_a_failure_not_a_crash():
    completed, passed, failed, _ = run_suite("--filter", "^framing/single-frame$",
                                             worker=[str(TESTS / "no-such-worker")])
    assert (passed, failed) == (0, 1)
    assert "cannot start the worker" in completed.stdout


def test_no_worker_command_is_a_usage_error():
    completed = subprocess.run([sys.executable, str(RUNNER)], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "no worker command" in completed.stderr


# --- The vectors ---------------------------------------------------------------------------

CASES = conformance.load_cases(PROTOCOL / "vectors")


def test_there_are_at_least_80_cases_with_unique_names():
    names = [case.name for case in CASES]
    assert len(names) >= 80
    assert len(set(names)) == len(names)


def expected_codes(item) -> set[int]:
    if "batch" in item:
        return set().union(*(expected_codes(entry) for entry in item["batch"]))
    if "error_code" in item:
        return {item["error_code"]}
    if "error" in item:
        return {item["error"]["code"]}
    return set()


def test_every_error_code_but_internal_error_is_expected_by_some_case():
    seen = set()
    for case in CASES:
        for item in case.expect:
            seen |= expected_codes(item)
    codes = dict(CONSTANTS["errorCodes"])
    codes.pop("internalError")  # no request can provoke a bug on purpose
    assert set(codes.values()) <= seen


def test_every_method_and_param_error_reason_is_exercised():
    sent = set()
    reasons = set()
    for case in CASES:
        for step in case.steps:
            for message in (step.sent_value if isinstance(step.sent_value, list) else [step.sent_value]):
                if isinstance(message, dict) and isinstance(message.get("method"), str):
                    sent.add(message["method"])
        for item in case.expect:
            for entry in item.get("batch", [item]):
                if isinstance(entry.get("data"), dict) and "reason" in entry["data"]:
                    reasons.add(entry["data"]["reason"])
    assert set(CONSTANTS["methods"] + CONSTANTS["testMethods"]) <= sent
    assert set(CONSTANTS["paramErrorReasons"]) <= reasons


def walk(value):
    """Every JSON value inside ``value``, itself included."""
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from walk(child)


# How a request asks for each encoding: the params member that carries the numbers.
ENCODING_MEMBERS = {"json": "numbers", "packed": "numbersPacked", "shm": "numbersShm"}


def test_every_encoding_is_advertised_and_exercised():
    assert set(ENCODING_MEMBERS) == set(CONSTANTS["encodings"]), "a new encoding needs vectors here"
    advertised, used = set(), set()
    for case in CASES:
        for item in case.expect:
            for value in walk(item.get("result_schema", {})):
                if isinstance(value, dict) and value.get("contains", {}).get("const") in ENCODING_MEMBERS:
                    advertised.add(value["contains"]["const"])
        for message in sent_requests(case):
            params = message.get("params")
            if message.get("method") == "calculate_squares" and isinstance(params, dict):
                used |= {name for name, member in ENCODING_MEMBERS.items() if member in params}
    assert advertised == set(CONSTANTS["encodings"])
    assert used == set(CONSTANTS["encodings"])


def test_initialize_vectors_pin_the_version_of_constants_json():
    pinned = set()
    for case in CASES:
        for item in case.expect:
            for value in walk(item.get("result_schema", {})):
                if isinstance(value, dict) and isinstance(value.get("protocolVersion"), dict):
                    pinned.add(value["protocolVersion"].get("const"))
    assert pinned == {CONSTANTS["protocolVersion"]}


def test_every_topic_file_has_a_description_and_cases():
    for path in sorted((PROTOCOL / "vectors").glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document["description"] and document["cases"], path.name


# --- One source of truth -------------------------------------------------------------------

def test_schemas_use_the_codes_and_reasons_of_constants_json():
    error = json.loads((PROTOCOL / "schemas" / "error.json").read_text(encoding="utf-8"))
    codes = {branch["properties"]["code"]["const"] for branch in error["oneOf"]}
    assert codes == set(CONSTANTS["errorCodes"].values())
    data = json.loads((PROTOCOL / "schemas" / "invalid-params-data.json").read_text(encoding="utf-8"))
    reasons = [r for branch in data["oneOf"] for r in branch["properties"]["reason"]["enum"]]
    assert sorted(reasons) == sorted(CONSTANTS["paramErrorReasons"])


def test_reference_worker_uses_the_constants_of_constants_json():
    assert reference.PROTOCOL_VERSION == CONSTANTS["protocolVersion"]
    assert list(reference.ENCODINGS) == CONSTANTS["encodings"]
    assert list(reference.PARAM_ERROR_REASONS) == CONSTANTS["paramErrorReasons"]
    assert reference.SERVER_NAME == CONSTANTS["serverName"]
    assert reference.MAX_NUMBER == CONSTANTS["limits"]["maxNumber"]
    assert reference.MAX_NESTING_DEPTH == CONSTANTS["maxNestingDepth"]
    assert reference.MAX_SLEEP_MS == CONSTANTS["maxSleepMs"]
    assert reference.USAGE_EXIT == CONSTANTS["exitCodes"]["usage"]
    names = {"parseError": "PARSE_ERROR", "invalidRequest": "INVALID_REQUEST",
             "methodNotFound": "METHOD_NOT_FOUND", "invalidParams": "INVALID_PARAMS",
             "internalError": "INTERNAL_ERROR", "requestCancelled": "REQUEST_CANCELLED",
             "frameTooLarge": "FRAME_TOO_LARGE"}
    assert {key: getattr(reference, attr) for key, attr in names.items()} == CONSTANTS["errorCodes"]


def test_every_schema_loads_and_every_ref_resolves():
    validator = conformance.Validator(PROTOCOL / "schemas")
    samples = [None, True, 0, "x", [], {}, [1], {"a": 1}]
    for path in sorted((PROTOCOL / "schemas").glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path.name
        for sample in samples:  # walks every branch that a sample reaches; raises on a bad $ref
            validator.errors(sample, path.name)


def expectations_by_id(case) -> dict:
    found = {}
    for item in case.expect:
        for entry in item.get("batch", [item]):
            if "id" in entry:
                found.setdefault(conformance.dumps(entry["id"]), []).append(entry)
    return found


def sent_requests(case):
    for step in case.steps:
        for message in (step.sent_value if isinstance(step.sent_value, list) else [step.sent_value]):
            if isinstance(message, dict) and "id" in message:
                yield message


def breaks_packed_length_rule(params) -> bool:
    """The one rule of packed text that the schemas' linear pattern cannot state (SPEC §4): a
    length that is a multiple of 4, decoding to a whole number of 4-byte numbers."""
    text = params.get("numbersPacked") if isinstance(params, dict) else None
    if not isinstance(text, str):
        return False
    padding = len(text) - len(text.rstrip("="))
    return len(text) % 4 != 0 or (len(text) // 4 * 3 - padding) % 4 != 0


def statically_refused_shm(params) -> bool:
    """Whether numbersShm fails the checks a schema can state (SPEC §4, checks 1 and 2 without
    the prefix): R an object with pid, fd, name and count of their types and ranges, the name of
    the class. The rest (prefix, what the fd is, mode, size) only the worker can check."""
    reference_ = params.get("numbersShm") if isinstance(params, dict) else None
    if not isinstance(reference_, dict) or not {"pid", "fd", "name", "count"} <= set(reference_):
        return True
    def integer(value, low, high):
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    name = reference_["name"]
    return not (integer(reference_["pid"], 1, 2**31 - 1) and integer(reference_["fd"], 0, 2**31 - 1)
                and integer(reference_["count"], 0, 2**32 - 1) and isinstance(name, str)
                and re.fullmatch(r"[A-Za-z0-9_.-]{1,249}", name) is not None)


def test_schemas_accept_what_the_vectors_serve_and_refuse_what_they_reject():
    """The schemas and the vectors say the same thing about params."""
    validator = conformance.Validator(PROTOCOL / "schemas")
    checked = {"served": 0, "refused": 0, "runtime": 0}
    for case in CASES:
        expected = expectations_by_id(case)
        requests = list(sent_requests(case))
        for message in requests:
            key = conformance.dumps(message["id"])
            if sum(conformance.dumps(m["id"]) == key for m in requests) != 1 or len(expected.get(key, [])) != 1:
                continue
            entry = expected[key][0]
            if message.get("method") == "$/cancel":
                continue  # its schema is what a client sends; the worker ignores bad params (SPEC §4)
            params_schema = conformance.method_schema(str(message.get("method")), "params")
            has_schema = (PROTOCOL / "schemas" / params_schema).is_file()
            if "result" in entry or "result_schema" in entry:
                assert validator.errors(message, "incoming.json") == [], case.name
                if has_schema and "params" in message:
                    assert validator.errors(message["params"], params_schema) == [], case.name
                checked["served"] += 1
            elif (entry.get("error_code") == -32602 and entry.get("data") == {"reason": "invalid_shm"}
                  and message.get("method") == "calculate_squares"):
                refused = bool(validator.errors(message["params"], params_schema))
                assert refused == statically_refused_shm(message["params"]), case.name
                checked["runtime" if not refused else "refused"] += 1
            elif entry.get("error_code") == -32602 and has_schema and "params" in message:
                assert (validator.errors(message["params"], params_schema)
                        or breaks_packed_length_rule(message["params"])), case.name
                checked["refused"] += 1
    assert checked["served"] > 50 and checked["refused"] > 20 and checked["runtime"] > 10, checked


# --- The validator and the matchers --------------------------------------------------------

@pytest.fixture
def validator():
    return conformance.Validator(PROTOCOL / "schemas")


def loads(text):
    return conformance.loads(text)


def test_validator_accepts_real_replies(validator):
    for text in ['{"jsonrpc":"2.0","id":1,"result":[9,18446744065119617025]}',
                 '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}',
                 '{"jsonrpc":"2.0","id":"a","error":{"code":-32602,"message":"m","data":{"index":3,"reason":"negative"}}}',
                 '[{"jsonrpc":"2.0","id":1.5,"result":null}]']:
        assert validator.errors(loads(text), "outgoing.json") == [], text


@pytest.mark.parametrize("text, complaint", [
    ('{"jsonrpc":"2.0","id":1}', "alternatives"),
    ('{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}', "alternatives"),
    ('{"jsonrpc":"2.0","id":true,"result":1}', "alternatives"),
    ('[]', "alternatives"),
    ('{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Frame too large"}}', "alternatives"),
    ('{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"m","data":{"index":-1,"reason":"negative"}}}',
     "alternatives"),
])
def test_validator_rejects_malformed_replies(validator, text, complaint):
    errors = validator.errors(loads(text), "outgoing.json")
    assert errors and complaint in errors[0]


def test_validator_treats_a_fraction_as_no_integer(validator):
    assert validator.errors(loads("[1.0]"), "calculate_squares.result.json")
    assert validator.errors(loads("[18446744065119617026]"), "calculate_squares.result.json")
    assert not validator.errors(loads("[18446744065119617025]"), "calculate_squares.result.json")


def whole_integers(text: str, width: int) -> bool:
    """The length rule of packed text (SPEC §4), which the schemas leave to a decoder: a length
    that is a multiple of 4, decoding to a whole number of `width`-byte integers."""
    padding = len(text) - len(text.rstrip("="))
    return len(text) % 4 == 0 and (len(text) // 4 * 3 - padding) % width == 0


@pytest.mark.parametrize("schema, width", [("packed-numbers.json", 4), ("packed-squares.json", 8)])
def test_packed_schemas_and_the_length_rule_accept_exactly_padded_base64_of_whole_integers(validator, schema, width):
    def accepted(text: str) -> bool:
        return validator.errors(text, schema) == [] and whole_integers(text, width)

    rng = random.Random(width)
    for size in range(0, 8 * width + 1):
        data = bytes(rng.randrange(256) for _ in range(size))
        text = base64.b64encode(data).decode("ascii")
        assert validator.errors(text, schema) == [], (size, text)  # the pattern takes any padded base64
        assert accepted(text) == (size % width == 0), (size, text)
        if size % width == 0 and size:
            broken = [text + "\n", " " + text, "=" + text[1:], text + "AAAA",
                      text.replace("A", "-") if "A" in text else "-" + text[1:]]
            if text.endswith("="):  # unpadded; padding followed by data
                broken += [text.rstrip("="), text[:-2] + "=A"]
            else:  # a padding character too many
                broken += [text[:-1] + "="]
            for item in broken:
                assert not accepted(item), (size, item)
    # Pad bits are zero (SPEC §4): the pattern checks the last character before the padding.
    assert validator.errors("AAAAAB==", "packed-numbers.json")
    assert validator.errors("AQAAAAIAAAB=", "packed-numbers.json")
    assert validator.errors(0, schema) and validator.errors(["AAAAAA=="], schema)


def test_packed_patterns_use_no_repeated_group():
    """A repeated group overflows some regex engines' stacks on a long text (JavaScript's on a
    10.7 MB reply): the patterns stay one character class and a fixed tail."""
    for name in ("packed-numbers.json", "packed-squares.json"):
        pattern = json.loads((PROTOCOL / "schemas" / name).read_text())["pattern"]
        assert ")*" not in pattern and ")+" not in pattern and "){" not in pattern, (name, pattern)


def test_validator_refuses_keywords_outside_its_subset(tmp_path):
    (tmp_path / "s.json").write_text('{"format": "email"}')
    with pytest.raises(conformance.SchemaError):
        conformance.Validator(tmp_path).errors("x", "s.json")


def test_json_equality_keeps_types_apart():
    equal = conformance.json_equal
    assert equal(loads("1.5"), loads("1.50"))
    assert equal(loads("1e3"), loads("1000.0"))
    assert not equal(loads("1"), loads("1.0"))
    assert not equal(loads("1"), loads("true"))
    assert not equal(loads("0"), loads("false"))
    assert equal(loads("12345678901234567890"), 12345678901234567890)
    assert not equal(loads('{"a":1}'), loads('{"a":1,"b":2}'))


def test_matchers_check_id_code_data_and_result():
    match = conformance.match
    reply = loads('{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"m","data":{"reason":"invalid_shape"}}}')
    assert match({"id": 1, "error_code": -32602, "data": {"reason": "invalid_shape"}}, reply) == []
    assert match({"id": 2, "error_code": -32602}, reply)
    assert match({"id": 1, "error_code": -32600}, reply)
    assert match({"id": 1, "result": None}, reply)
    assert match({"id": 1, "error_code": -32602, "no_data": True}, reply)
    ok = loads('{"jsonrpc":"2.0","id":1,"result":[0,1,4]}')
    assert match({"id": 1, "result": {"$squares": [0, 3]}}, ok) == []
    assert match({"id": 1, "result_schema": {"type": "array", "maxItems": 2}}, ok)


def test_batch_matchers_keep_order():
    match = conformance.match
    reply = loads('[{"jsonrpc":"2.0","id":1,"result":null},{"jsonrpc":"2.0","id":2,"result":null}]')
    assert match({"batch": [{"id": 1, "result": None}, {"id": 2, "result": None}]}, reply) == []
    assert match({"batch": [{"id": 2, "result": None}, {"id": 1, "result": None}]}, reply)


# --- The shared-memory machinery (1.2) -------------------------------------------------------

def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def spec(key="a", **fields):
    raw = {"numbers": [1, 2, 3]}
    raw.update(fields)
    return conformance.parse_segments({key: raw}, "test")


def test_a_memfd_segment_holds_the_numbers_then_the_fill_with_mode_0600():
    shm = conformance.ShmContext(spec(numbers=[1, 2, 4294967295]))
    try:
        segment = shm.segments["a"]
        assert segment.name == shm.prefix + "a" and len(shm.prefix) >= 12 + 32
        assert os.readlink(f"/proc/self/fd/{segment.fd}") == f"/memfd:{segment.name} (deleted)"
        info = os.fstat(segment.fd)
        assert info.st_mode & 0o777 == 0o600 and info.st_size == 16 + 24
        data = os.pread(segment.fd, 64, 0)
        assert data[:12] == struct.pack("<3I", 1, 2, 4294967295)
        assert data[12:] == bytes([conformance.SEGMENT_FILL]) * 28
        assert os.get_inheritable(segment.fd) is False  # the worker must not get it for free
        assert fcntl.fcntl(segment.fd, fcntl.F_GET_SEALS) == fcntl.F_SEAL_SHRINK  # as a client seals it
        with pytest.raises(PermissionError):
            os.ftruncate(segment.fd, 8)
    finally:
        shm.close()


def test_sealed_false_makes_an_unsealable_memfd_and_a_list_names_the_seals():
    shm = conformance.ShmContext({**spec("u", sealed=False), **spec("e", sealed=[]),
                                  **spec("g", sealed=["shrink", "grow"]), **spec("s", sealed=["grow", "seal"])})
    try:
        u, e, g, s = (shm.segments[k].fd for k in "uegs")
        assert fcntl.fcntl(u, fcntl.F_GET_SEALS) == fcntl.F_SEAL_SEAL  # no MFD_ALLOW_SEALING
        with pytest.raises(PermissionError):
            fcntl.fcntl(u, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        assert fcntl.fcntl(e, fcntl.F_GET_SEALS) == 0
        assert fcntl.fcntl(g, fcntl.F_GET_SEALS) == fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
        assert fcntl.fcntl(s, fcntl.F_GET_SEALS) == fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        os.ftruncate(u, 4)  # unsealed: the client could shrink it under a worker's mapping
        assert os.fstat(u).st_size == 4
    finally:
        shm.close()


def test_segment_overrides_mode_size_name_and_kind():
    shm = conformance.ShmContext({**spec("m", mode="0644", size=4096), **spec("n", name={"$shmPrefix": "x"}),
                                  **spec("f", kind="file"), **spec("o", name="foreign")})
    try:
        m, n, f, o = (shm.segments[k] for k in "mnfo")
        assert os.fstat(m.fd).st_mode & 0o777 == 0o644 and os.fstat(m.fd).st_size == 4096
        assert n.name == shm.prefix + "x" and o.name == "foreign"
        assert os.readlink(f"/proc/self/fd/{o.fd}") == "/memfd:foreign (deleted)"
        assert not os.readlink(f"/proc/self/fd/{f.fd}").startswith("/memfd:")
        assert os.fstat(f.fd).st_mode & 0o777 == 0o600
    finally:
        shm.close()


def test_segments_are_closed_after_close():
    before = open_fds()
    shm = conformance.ShmContext({**spec("a"), **spec("b", kind="file")})
    assert len(open_fds() - before) == 2
    shm.close()
    assert open_fds() == before


def test_render_substitutes_references_overrides_and_omissions():
    shm = conformance.ShmContext({**spec("a"), **spec("b", numbers=[])})
    try:
        shm.worker_pid = 4321
        a, b = shm.segments["a"], shm.segments["b"]
        assert shm.render({"numbersShm": {"$shm": "a"}}) == {"numbersShm": {
            "pid": os.getpid(), "fd": a.fd, "name": a.name, "count": 3}}
        assert shm.render({"$shm": "a", "count": 5, "fd": {"$shmFd": "b"}, "pid": {"$workerPid": None},
                           "name": {"$omit": None}}) == {"pid": 4321, "fd": b.fd, "count": 5}
        assert shm.render([{"$shmPrefix": "x-"}, {"$shmName": "b"}, {"$runnerPid": None}]) == [
            shm.prefix + "x-", b.name, os.getpid()]
        with pytest.raises(conformance.VectorError):
            shm.render({"$shm": "nope"})
    finally:
        shm.close()


def test_check_after_reports_unwritten_wrong_and_changed_segments():
    shm = conformance.ShmContext({**spec("a", numbers=[3, 4]), **spec("b")})
    try:
        a, b = shm.segments["a"], shm.segments["b"]
        problems: list[str] = []
        shm.check_after({"a": {"squares": [9, 16]}, "b": {"unchanged": True}}, problems)
        assert len(problems) == 1 and "squares[0] (byte 8): expected 9" in problems[0] \
            and "never written" in problems[0]
        os.pwrite(a.fd, struct.pack("<2Q", 9, 17), 8)
        os.pwrite(b.fd, b"\x00", 20)
        problems = []
        shm.check_after({"a": {"squares": [9, 16]}, "b": {"unchanged": True}}, problems)
        assert problems == ["segment a: squares[1] (byte 16): expected 16, got 17",
                            "segment b: expected unchanged, but byte 20 (or its size) changed"]
        os.pwrite(a.fd, struct.pack("<Q", 16), 16)
        problems = []
        shm.check_after({"a": {"squares": [9, 16]}}, problems)
        assert problems == []
    finally:
        shm.close()


@pytest.mark.parametrize("segments, after, complaint", [
    ({"a": {"numbers": [1], "mode": 420}}, None, "mode is an octal string"),
    ({"a": {"numbers": [1], "mode": "644"}}, None, "mode is an octal string"),
    ({"a": {"numbers": [4294967296]}}, None, "u32"),
    ({"a": {"numbers": [1], "colour": "red"}}, None, "takes only"),
    ({"a": {"numbers": [1], "kind": "pipe"}}, None, "kind is"),
    ({"a": {"numbers": [1], "sealed": "yes"}}, None, "sealed is"),
    ({"a": {"numbers": [1], "sealed": ["shrink", "write"]}}, None, "sealed is"),
    ({"a": {"numbers": [1], "sealed": ["shrink", "shrink"]}}, None, "sealed is"),
    ({"a": {"numbers": [1], "kind": "file", "sealed": False}}, None, "only a memfd is sealed"),
    ({"a": {"numbers": [1]}}, {"b": {"squares": [1]}}, "segmentsAfter"),
    ({"a": {"numbers": [1]}}, {"a": {"squares": [1], "more": 1}}, "segmentsAfter"),
])
def test_bad_segment_declarations_are_vector_errors(tmp_path, segments, after, complaint):
    case = {"id": "x", "description": "x", "segments": segments, "send": [
        {"jsonrpc": "2.0", "id": 1, "method": "calculate_squares", "params": {"numbersShm": {"$shm": "a"}}}],
        "expect": [{"id": 1, "result": None}]}
    if after is not None:
        case["segmentsAfter"] = after
    (tmp_path / "t.json").write_text(json.dumps({"description": "t", "cases": [case]}))
    with pytest.raises(conformance.VectorError, match=complaint):
        conformance.load_cases(tmp_path)


def test_a_case_with_segments_requires_shm_and_the_runners_initialize():
    by_name = {case.name: case for case in CASES}
    assert by_name["shm/spec-example"].requires == ["shm"]
    assert by_name["shm/spec-example"].shm_initialize is True
    assert by_name["shm/no-prefix-armed"].shm_initialize is False
    assert by_name["calculate_squares/basic"].requires == []
    assert not by_name["calculate_squares/basic"].shm_initialize
    assert {case.file for case in CASES if case.requires} == {"shm"}


def test_the_runners_initialize_must_be_answered_first_and_list_shm():
    init = loads('{"jsonrpc":"2.0","id":"conformance-shm-initialize","result":{"encodings":["json","shm"]}}')
    other = loads('{"jsonrpc":"2.0","id":1,"result":[4]}')
    problems: list[str] = []
    assert conformance.check_shm_initialize([init, other], problems) == [other] and problems == []
    conformance.check_shm_initialize([other, init], problems)
    assert "was not answered first" in problems[0]
    problems = []
    no_shm = loads('{"jsonrpc":"2.0","id":"conformance-shm-initialize","result":{"encodings":["json"]}}')
    conformance.check_shm_initialize([no_shm], problems)
    assert 'listing "shm"' in problems[0]


def test_a_run_leaves_no_segment_open_in_the_runner():
    case = next(case for case in CASES if case.name == "shm/in-a-batch")
    validator = conformance.Validator(PROTOCOL / "schemas")
    before = open_fds()
    outcome = conformance.run_case(case, REFERENCE, 20, validator)
    assert outcome.passed, outcome.problems
    assert open_fds() == before


def test_reference_worker_lists_shm_only_where_procfs_serves_it(monkeypatch):
    options = reference.Options(argparse.Namespace(parallelism=1, max_in_flight=1, max_frame_bytes=100,
                                                   test_methods=False, fault=None))
    assert "shm" in reference.Worker(options).initialize_result()["encodings"]
    monkeypatch.setattr(reference, "procfs_usable", lambda: False)
    worker = reference.Worker(options)
    assert worker.initialize_result()["encodings"] == ["json", "packed"]
    with pytest.raises(reference.RpcError) as raised:  # a worker without shm: invalid_shape
        worker.calculate_squares({"numbersShm": {"pid": 1, "fd": 3, "name": "x", "count": 0}})
    assert raised.value.error["data"] == {"reason": "invalid_shape"}
