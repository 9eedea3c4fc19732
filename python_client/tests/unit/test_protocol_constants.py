"""The package's protocol constants agree with protocol/constants.json, the shared source.

The client may be ahead of the contract by a minor version (it still talks to 1.0 workers), never
behind it: every name the contract defines must be known here, and at the same minor version
the sets must be equal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from my_module import _protocol

CONSTANTS = Path(__file__).resolve().parents[3] / "protocol" / "constants.json"


@pytest.fixture(scope="module")
def constants() -> dict:
    if not CONSTANTS.is_file():
        pytest.skip(f"{CONSTANTS} is absent (python_client used outside the repository)")
    return json.loads(CONSTANTS.read_text())


def _version(text: str) -> tuple:
    major, minor = text.split(".")
    return int(major), int(minor)


@pytest.fixture(scope="module")
def same_minor(constants) -> bool:
    return _version(_protocol.PROTOCOL_VERSION) == _version(constants["protocolVersion"])


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


def _check(ours: set, theirs: set, same_minor: bool) -> None:
    assert theirs <= ours, f"the contract defines {theirs - ours}, unknown to the client"
    if same_minor:
        assert ours == theirs


def test_version_is_the_contracts_major_and_not_behind(constants) -> None:
    ours, theirs = _version(_protocol.PROTOCOL_VERSION), _version(constants["protocolVersion"])
    assert ours[0] == theirs[0] == _protocol.PROTOCOL_MAJOR
    assert ours >= theirs


def test_error_codes_match(constants, same_minor) -> None:
    ours = {(code.name, code.value) for code in _protocol.ErrorCode}
    theirs = {(_snake(name), value) for name, value in constants["errorCodes"].items()}
    _check(ours, theirs, same_minor)


def test_method_names_match(constants, same_minor) -> None:
    theirs = set(constants["methods"]) | set(constants["testMethods"])
    _check({m.value for m in _protocol.Method}, theirs, same_minor)


def test_param_error_reasons_match(constants, same_minor) -> None:
    _check({r.value for r in _protocol.Reason}, set(constants["paramErrorReasons"]), same_minor)


def test_encodings_match(constants, same_minor) -> None:
    ours = {_protocol.ENCODING_JSON, _protocol.ENCODING_PACKED, _protocol.ENCODING_SHM}
    _check(ours, set(constants.get("encodings", ["json"])), same_minor)


def test_framing_and_limits_match(constants) -> None:
    assert _protocol.FRAME_HEADER_BYTES == constants["frameHeaderBytes"]
    assert _protocol.DEFAULT_MAX_FRAME_BYTES == constants["limits"]["maxFrameBytes"]
    assert _protocol.MAX_NUMBER == constants["limits"]["maxNumber"]
