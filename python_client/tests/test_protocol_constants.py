"""The package's protocol constants agree with protocol/constants.json, the shared source."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from my_module import _protocol

CONSTANTS = Path(__file__).resolve().parents[2] / "protocol" / "constants.json"


@pytest.fixture(scope="module")
def constants() -> dict:
    if not CONSTANTS.is_file():
        pytest.skip(f"{CONSTANTS} is absent (python_client used outside the repository)")
    return json.loads(CONSTANTS.read_text())


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


def test_error_codes_match(constants) -> None:
    ours = {code.name: code.value for code in _protocol.ErrorCode}
    theirs = {_snake(name): value for name, value in constants["errorCodes"].items()}
    assert ours == theirs


def test_method_names_match(constants) -> None:
    ours = {m.value for m in _protocol.Method}
    assert ours == set(constants["methods"]) | set(constants["testMethods"])


def test_param_error_reasons_match(constants) -> None:
    assert {r.value for r in _protocol.Reason} == set(constants["paramErrorReasons"])


def test_version_framing_and_limits_match(constants) -> None:
    assert _protocol.PROTOCOL_VERSION == constants["protocolVersion"]
    assert _protocol.FRAME_HEADER_BYTES == constants["frameHeaderBytes"]
    assert _protocol.DEFAULT_MAX_FRAME_BYTES == constants["limits"]["maxFrameBytes"]
    assert _protocol.MAX_NUMBER == constants["limits"]["maxNumber"]
