"""JSON-RPC 2.0 as protocol v1 uses it, with no I/O and no method knowledge: requests out, replies classified in."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple, Union

from ._errors import ProtocolError, WorkerError
from ._protocol import JSONRPC_VERSION, Method

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_decoder = json.JSONDecoder()
_scan = _decoder.scan_once  # type: ignore[attr-defined]  # the C scanner: json.loads without its type checks and wrappers

Body = Union[bytes, bytearray]


def request_head(rid: int, method: str) -> bytes:
    """A request body up to ``"params":`` (the caller appends params and ``}``, uncopied)."""
    return b'{"jsonrpc":"2.0","id":%d,"method":%s,"params":' % (rid, _dumps(method).encode())


def request(rid: int, method: str, params: Any = None) -> bytes:
    message: Dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "id": rid, "method": method}
    if params is not None:
        message["params"] = params
    return _dumps(message).encode()


def cancel(rid: int) -> bytes:
    """The ``$/cancel`` notification for request ``rid`` (no id: never answered)."""
    return _dumps({"jsonrpc": JSONRPC_VERSION, "method": Method.CANCEL.value, "params": {"id": rid}}).encode()


def loads(body: Body) -> Any:
    """``json.loads(body)`` through the C scanner alone, without its type checks and wrappers (small replies)."""
    text = body.decode()
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else _decoder.decode(text)  # else: its exact error


def parse_reply(body: Body) -> Optional[Tuple[int, bool, Any]]:
    """A reply as ``(id, is_error, result or error object)``, None for a notification, else ``ProtocolError``."""
    try:
        message = loads(body)
    except ValueError as exc:
        raise ProtocolError(f"worker wrote a frame that is not JSON ({exc}): {bytes(body[:80])!r}") from None
    if type(message) is not dict or message.get("jsonrpc") != JSONRPC_VERSION:
        raise ProtocolError(f"worker wrote something that is not a JSON-RPC reply: {bytes(body[:120])!r}")
    rid = message.get("id")
    if "method" in message and "id" not in message:
        return None
    if type(rid) is not int:
        if rid is None and "error" in message:
            raise ProtocolError(f"worker reported an error it could not tie to a request: {message['error']}")
        raise ProtocolError(f"worker replied with an id this client never uses: {rid!r:.80}")
    if ("error" in message) == ("result" in message):
        raise ProtocolError(f"reply to request {rid} must hold exactly one of result and error")
    if "error" not in message:
        return rid, False, message["result"]
    error = message["error"]
    if type(error) is dict and type(error.get("code")) is int and isinstance(error.get("message"), str):
        return rid, True, error
    raise ProtocolError(f"worker sent a malformed error object: {error!r:.200}")


def error_from_reply(error: Dict[str, Any], method: str) -> WorkerError:
    """A :class:`WorkerError` carrying a JSON-RPC error object the caller did not expect."""
    exc = WorkerError(f"worker answered {method} with error {error.get('code')}: {error.get('message')}")
    exc.code, exc.data = error.get("code"), error.get("data")
    return exc
