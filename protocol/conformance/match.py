"""Checking the replies: schemas, the runner's own initialize, and the expectations (any order or
in order, with the matcher language)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from .jsonexact import dumps, first_difference, json_equal, short
from .schema import Validator, method_schema
from .macros import expand_macros
from .shm import SHM_INITIALIZE_ID
from .vectors import Case

# An inline result_schema may $ref the protocol's own schemas.
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


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
            inline = Validator(SCHEMAS)
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
