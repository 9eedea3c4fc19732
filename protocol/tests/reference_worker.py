#!/usr/bin/env python3
"""A reference squares worker, written from protocol/SPEC.md with the standard library only.

It exists for two reasons: the conformance runner is tested against it (it must pass every
vector, and each ``--fault`` mode must make some vector fail), and a client can be developed
against it before the real worker is built. Its command line is the real worker's, plus
``--fault``. It is correct, not fast: it parses JSON with the ``json`` module and runs every
frame on a thread of its own.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import logging
import mmap
import os
import re
import signal
import stat
import struct
import sys
import threading
from array import array
from typing import Any

PROTOCOL_VERSION = "1.2"
ENCODINGS = ("json", "packed", "shm")  # "shm" is listed only where procfs serves it
PARAM_ERROR_REASONS = ("not_an_integer", "negative", "too_large", "not_an_array", "invalid_shape",
                       "invalid_packed", "invalid_shm")
SERVER_NAME = "squares-worker"
SERVER_VERSION = "0.1.0"
MAX_NUMBER = 4294967295
MAX_NESTING_DEPTH = 256
MAX_SLEEP_MS = 60000
USAGE_EXIT = 64

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_CANCELLED = -32800
FRAME_TOO_LARGE = -32000

FAULTS = ("wrong-squares", "missing-error", "wrong-id", "hang", "exit-at-once", "garbage",
          "flood-stderr", "no-shm", "shm-unwritten", "shm-lax-mode", "shm-unsealed")

log = logging.getLogger("reference-worker")


# --- JSON values that remember how they were written --------------------------------------

class RawInt(int):
    """A JSON integer that keeps its text, so that an id is echoed exactly as it came."""

    text: str

    def __new__(cls, text: str) -> "RawInt":
        value = super().__new__(cls, text)
        value.text = text
        return value


class RawFraction:
    """A JSON number with a fraction or exponent. Never an integer here, whatever its value."""

    def __init__(self, text: str) -> None:
        self.text = text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


_DECODER = json.JSONDecoder(parse_int=RawInt, parse_float=RawFraction,
                            parse_constant=_refuse_constant)


class ParseError(Exception):
    pass


def nesting_depth(value: Any) -> int:
    """Depth of arrays/objects: a scalar is 0, ``[]`` is 1. Iterative: no recursion limit."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list):
            children = item
        elif isinstance(item, dict):
            children = item.values()
        else:
            continue
        deepest = max(deepest, depth)
        for child in children:
            if isinstance(child, (list, dict)):
                stack.append((child, depth + 1))
    return deepest


def parse_frame(body: bytes) -> Any:
    if not body:
        raise ParseError("empty frame")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ParseError(f"invalid UTF-8: {error}") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise ParseError("nesting too deep") from None
    except ValueError as error:
        raise ParseError(f"invalid JSON: {error}") from None
    if nesting_depth(value) > MAX_NESTING_DEPTH:
        raise ParseError("nesting too deep")
    return value


def id_text(request_id: Any) -> str:
    if isinstance(request_id, (RawInt, RawFraction)):
        return request_id.text
    return dumps(request_id)


def id_key(request_id: Any) -> tuple:
    """What makes two ids the same id: the JSON type, and the value of a string or the text of
    a number (1 and 1.0 are not the same id: SPEC.md section 6)."""
    if request_id is None:
        return ("null",)
    if isinstance(request_id, str):
        return ("string", request_id)
    return ("number", request_id.text)


def is_valid_id(value: Any) -> bool:
    return value is None or isinstance(value, (str, RawInt, RawFraction))


def is_integer(value: Any) -> bool:
    return isinstance(value, RawInt)


# --- Replies -------------------------------------------------------------------------------

def error_object(code: int, message: str, data: Any = None) -> dict:
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return error


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.error = error_object(code, message, data)


def invalid_params(message: str, data: dict) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Invalid params: {message}", data)


class Options:
    def __init__(self, args: argparse.Namespace) -> None:
        self.parallelism: int = args.parallelism
        self.max_in_flight: int = args.max_in_flight
        self.max_frame_bytes: int = args.max_frame_bytes
        self.test_methods: bool = args.test_methods
        self.fault: str | None = args.fault


class Worker:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.write_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(options.max_in_flight)
        self.registry_lock = threading.Lock()
        self.in_flight: dict[tuple, list[threading.Event]] = {}
        self.stdout = sys.stdout.buffer
        self.stdout_broken = False
        # The shared-memory plane (1.2): served where procfs is, armed by initialize's shmPrefix.
        self.serves_shm = options.fault != "no-shm" and procfs_usable()
        self.shm_prefix: str | None = None
        self.shm_lock = threading.Lock()

    # Output: whole frames, one at a time.
    def write_frame(self, text: str) -> None:
        body = text.encode("utf-8")
        with self.write_lock:
            if self.stdout_broken:
                return
            try:
                self.stdout.write(len(body).to_bytes(4, "big") + body)
                self.stdout.flush()
            except (BrokenPipeError, OSError):
                self.stdout_broken = True
                log.warning("stdout is closed; replies are dropped")

    def reply_text(self, request_id: Any, result_json: str | None = None,
                   error: dict | None = None) -> str:
        if (self.options.fault == "wrong-id" and isinstance(request_id, RawInt)
                and abs(request_id) > 2**53):
            # The classic bug: ids held as doubles, as in a JavaScript peer.
            shown = dumps(float(request_id))
        else:
            shown = id_text(request_id)
        if error is not None:
            return f'{{"jsonrpc":"2.0","id":{shown},"error":{dumps(error)}}}'
        return f'{{"jsonrpc":"2.0","id":{shown},"result":{result_json}}}'

    # Requests: checked in the reader (so that ids are registered in stream order), run later.
    def classify(self, message: Any) -> dict:
        """One batch entry or single message -> a call record (or an immediate error)."""
        if not isinstance(message, dict):
            return {"reply": True, "id": None,
                    "error": error_object(INVALID_REQUEST, "Invalid Request")}
        has_id = "id" in message
        request_id = message.get("id")
        if has_id and not is_valid_id(request_id):
            return {"reply": True, "id": None,
                    "error": error_object(INVALID_REQUEST, "Invalid Request: invalid id")}
        problem = None
        if message.get("jsonrpc") != "2.0":
            problem = 'jsonrpc must be "2.0"'
        elif not isinstance(message.get("method"), str):
            problem = "method must be a string"
        elif "params" in message and not isinstance(message["params"], (dict, list)):
            problem = "params must be an object or an array"
        if problem is not None:
            # Not a well-formed request, so not a notification either: it is answered.
            return {"reply": True, "id": request_id if has_id else None,
                    "error": error_object(INVALID_REQUEST, f"Invalid Request: {problem}")}
        call = {"reply": has_id, "id": request_id, "method": message["method"],
                "params": message.get("params"), "has_params": "params" in message}
        return call

    def register(self, call: dict) -> None:
        if call.get("method") is None or not call["reply"]:
            return
        event = threading.Event()
        call["cancel"] = event
        key = id_key(call["id"])
        with self.registry_lock:
            self.in_flight.setdefault(key, []).append(event)

    def unregister(self, call: dict) -> None:
        event = call.get("cancel")
        if event is None:
            return
        key = id_key(call["id"])
        with self.registry_lock:
            events = self.in_flight.get(key, [])
            if event in events:
                events.remove(event)
            if not events:
                self.in_flight.pop(key, None)

    def cancel(self, request_id: Any) -> None:
        with self.registry_lock:
            for event in self.in_flight.get(id_key(request_id), []):
                event.set()

    def run_call(self, call: dict) -> str | None:
        """Runs one call; returns the reply text, or None for a notification."""
        try:
            if "error" in call:
                return self.reply_text(call["id"], error=call["error"])
            try:
                result_json = self.dispatch(call)
            except RpcError as error:
                if not call["reply"]:
                    return None
                return self.reply_text(call["id"], error=error.error)
            except Exception as error:  # a bug here must still answer, not kill the worker
                log.exception("internal error")
                if not call["reply"]:
                    return None
                return self.reply_text(call["id"], error=error_object(
                    INTERNAL_ERROR, "Internal error", {"detail": str(error)}))
            if not call["reply"]:
                return None
            return self.reply_text(call["id"], result_json=result_json)
        finally:
            self.unregister(call)

    def dispatch(self, call: dict) -> str:
        method = call["method"]
        params = call["params"]
        if method == "calculate_squares":
            return self.calculate_squares(params)
        if method == "initialize":
            if call["has_params"] and not isinstance(params, dict):
                raise invalid_params("initialize takes no positional params",
                                     {"reason": "invalid_shape"})
            if isinstance(params, dict) and "shmPrefix" in params and self.options.fault != "no-shm":
                prefix = params["shmPrefix"]
                if not isinstance(prefix, str) or SHM_PREFIX.fullmatch(prefix) is None:
                    raise invalid_params("shmPrefix must be 1 to 200 characters of "
                                         "[A-Za-z0-9_.-]", {"reason": "invalid_shm"})
                with self.shm_lock:  # the last valid one wins
                    self.shm_prefix = prefix
            return dumps(self.initialize_result())
        if method == "shutdown":
            if not shutdown_params_ok(call):
                raise invalid_params("shutdown takes no params", {"reason": "invalid_shape"})
            return "null"
        if method == "$/cancel":
            target = cancel_target(params)
            if target is not _NO_TARGET:  # bad params are ignored, even in a request
                self.cancel(target)
            return "null"
        if method == "test/sleep" and self.options.test_methods:
            return self.sleep(call)
        raise RpcError(METHOD_NOT_FOUND, "Method not found", {"method": method})

    def initialize_result(self) -> dict:
        result = {
            "protocolVersion": PROTOCOL_VERSION,
            "serverInfo": {"name": SERVER_NAME, "version": SERVER_VERSION},
            "methods": ["initialize", "calculate_squares", "shutdown", "$/cancel"]
                       + (["test/sleep"] if self.options.test_methods else []),
            "limits": {"maxFrameBytes": self.options.max_frame_bytes,
                       "maxInFlight": self.options.max_in_flight,
                       "maxNumber": MAX_NUMBER},
            "parallelism": self.options.parallelism,
            "encodings": [name for name in ENCODINGS if name != "shm" or self.serves_shm],
        }
        if self.options.fault == "no-shm":  # a 1.1 worker
            result["protocolVersion"] = "1.1"
        return result

    def calculate_squares(self, params: Any) -> str:
        if isinstance(params, dict):
            given = [name for name in ("numbers", "numbersPacked", "numbersShm")
                     if name in params and (name != "numbersShm" or self.serves_shm)]
            if len(given) > 1:
                raise invalid_params(f"give one of {' and '.join(given)}",
                                     {"reason": "invalid_shape"})
            if given == ["numbersShm"]:
                return self.calculate_squares_shm(params["numbersShm"])
        if isinstance(params, dict) and "numbersPacked" in params:
            return self.calculate_squares_packed(params)
        if isinstance(params, dict):
            if "numbers" not in params:
                raise invalid_params('missing member "numbers"', {"reason": "invalid_shape"})
            numbers = params["numbers"]
        elif isinstance(params, list):
            if len(params) != 1:
                raise invalid_params("positional params must hold exactly one element",
                                     {"reason": "invalid_shape"})
            numbers = params[0]
        else:
            raise invalid_params('params must be {"numbers": [...]} or [[...]]',
                                 {"reason": "invalid_shape"})
        if not isinstance(numbers, list):
            raise invalid_params("numbers is not an array", {"reason": "not_an_array"})
        for index, number in enumerate(numbers):
            reason = None
            if not is_integer(number):
                reason, words = "not_an_integer", "not an integer"
            elif number < 0:
                reason, words = "negative", "negative"
            elif number > MAX_NUMBER:
                reason, words = "too_large", f"larger than {MAX_NUMBER}"
            if reason is not None:
                if self.options.fault == "missing-error":
                    return "[]"
                raise invalid_params(f"numbers[{index}] is {words}",
                                     {"index": index, "reason": reason})
        if self.options.fault == "wrong-squares":
            # The classic bug: squaring in doubles loses exactness past 2**53.
            return "[" + ",".join(str(int(float(n) * float(n))) for n in numbers) + "]"
        return "[" + ",".join(str(n * n) for n in numbers) + "]"

    def calculate_squares_packed(self, params: dict) -> str:
        """The packed encoding (1.1): base64 of little-endian u32s in, of u64s out."""
        if "numbers" in params:
            raise invalid_params("give numbers or numbersPacked, not both",
                                 {"reason": "invalid_shape"})
        try:
            numbers = decode_packed(params["numbersPacked"])
        except ValueError as error:
            if self.options.fault == "missing-error":
                return '{"squaresPacked":""}'
            raise invalid_params(f"numbersPacked: {error}", {"reason": "invalid_packed"}) from None
        if self.options.fault == "wrong-squares":
            squares = [int(float(n) * float(n)) for n in numbers]
        else:
            squares = [n * n for n in numbers]
        return dumps({"squaresPacked": encode_packed(squares)})

    def calculate_squares_shm(self, reference: Any) -> str:
        """The shared-memory encoding (1.2): u32s in the client's memfd, u64 squares written
        back into it at offset S. Each check of SPEC.md section 4, in its order; any failure
        is invalid_shm, and nothing is opened before the name checks pass."""
        def refuse(why: str) -> RpcError:
            return invalid_params(f"numbersShm: {why}", {"reason": "invalid_shm"})

        if not isinstance(reference, dict):
            raise refuse("not an object")
        for member, largest in SHM_MEMBERS.items():
            if member not in reference:
                raise refuse(f"missing member {member!r}")
            value = reference[member]
            if member == "name":
                if not isinstance(value, str):
                    raise refuse("name is not a string")
            elif not is_integer(value) or not (1 if member == "pid" else 0) <= value <= largest:
                raise refuse(f"{member} is not an integer in its range")
        pid, fd, name, count = (int(reference["pid"]), int(reference["fd"]), reference["name"],
                                int(reference["count"]))
        with self.shm_lock:
            prefix = self.shm_prefix
        if prefix is None:
            raise refuse("no initialize armed a shmPrefix")
        if SHM_NAME.fullmatch(name) is None or len(name.encode("utf-8")) > SHM_NAME_MAX_BYTES:
            raise refuse("name is not 1 to 249 bytes of [A-Za-z0-9_.-]")
        if not name.startswith(prefix) and self.options.fault != "shm-lax-mode":
            raise refuse("name does not start with the armed shmPrefix")
        expected = f"/memfd:{name} (deleted)"
        path = f"/proc/{pid}/fd/{fd}"
        try:
            link = os.readlink(path)
        except OSError as error:
            raise refuse(f"readlink {path}: {error.strerror}") from None
        if link != expected:
            raise refuse(f"{path} is not the memfd named {name!r}")
        offset = 8 * ((count + 1) // 2)
        needed = offset + 8 * count
        try:
            handle = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as error:
            raise refuse(f"open {path}: {error.strerror}") from None
        try:
            # F_SEAL_SHRINK keeps the size checked below true while the segment is mapped (a
            # shrink under the mapping would SIGBUS the worker); read before the size, since a
            # seal added after a shrink would not undo it. A memfd made without
            # MFD_ALLOW_SEALING reports F_SEAL_SEAL alone.
            try:
                seals = fcntl.fcntl(handle, fcntl.F_GET_SEALS)
            except OSError as error:
                raise refuse(f"F_GET_SEALS: {error.strerror}") from None
            if not seals & fcntl.F_SEAL_SHRINK and self.options.fault != "shm-unsealed":
                raise refuse(f"seals {seals:#x} lack F_SEAL_SHRINK")
            info = os.fstat(handle)
            if not stat.S_ISREG(info.st_mode):
                raise refuse("not a regular file")
            if info.st_uid != os.geteuid():
                raise refuse("owned by another user")
            if info.st_mode & 0o077 and self.options.fault != "shm-lax-mode":
                raise refuse(f"mode {info.st_mode & 0o777:o} gives access to group or others")
            if info.st_size < needed:
                raise refuse(f"{info.st_size} bytes, fewer than the {needed} needed")
            try:
                again = os.readlink(f"/proc/self/fd/{handle}")
            except OSError as error:
                raise refuse(f"readlink of the opened fd: {error.strerror}") from None
            if again != expected:
                raise refuse("the fd changed between readlink and open")
            mapping = mmap.mmap(handle, needed, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE) if count else None
        except OSError as error:
            raise refuse(f"mmap: {error.strerror}") from None
        finally:
            os.close(handle)
        if mapping is not None:
            try:
                numbers = array("I", mapping[:4 * count])
                if sys.byteorder == "big":
                    numbers.byteswap()
                if self.options.fault == "wrong-squares":
                    squares = array("Q", (int(float(n) * float(n)) for n in numbers))
                else:
                    squares = array("Q", (n * n for n in numbers))
                if sys.byteorder == "big":
                    squares.byteswap()
                if self.options.fault != "shm-unwritten":
                    mapping[offset:needed] = squares.tobytes()
            finally:
                mapping.close()
        return dumps({"squaresShm": {"offset": offset, "count": count}})

    def sleep(self, call: dict) -> str:
        params = call["params"]
        ms = params.get("ms") if isinstance(params, dict) else None
        if not is_integer(ms) or not 0 <= ms <= MAX_SLEEP_MS:
            raise invalid_params(f"ms must be an integer from 0 to {MAX_SLEEP_MS}",
                                 {"reason": "invalid_shape"})
        event = call.get("cancel")
        if event is None:  # a notification cannot be cancelled: it has no id to name
            threading.Event().wait(ms / 1000)
            return "null"
        if event.wait(ms / 1000):
            raise RpcError(REQUEST_CANCELLED, "Request cancelled")
        return "null"

    # One frame on a thread of its own; its slot is given back when its reply is written.
    def serve_frame(self, calls: list[dict] | None, single: dict | None) -> None:
        try:
            if single is not None:
                text = self.run_call(single)
                if text is not None:
                    self.write_frame(text)
            else:
                replies = [self.run_call(call) for call in calls]
                replies = [reply for reply in replies if reply is not None]
                if replies:
                    self.write_frame("[" + ",".join(replies) + "]")
        finally:
            self.slots.release()

    def start(self, calls: list[dict] | None, single: dict | None) -> None:
        threading.Thread(target=self.serve_frame, args=(calls, single), daemon=True).start()

    def finish(self) -> None:
        """Waits for every frame in flight: each holds a slot until its reply is written."""
        for _ in range(self.options.max_in_flight):
            self.slots.acquire()
        with self.write_lock:
            try:
                self.stdout.flush()
            except OSError:
                pass


# --- The shared-memory encoding -------------------------------------------------------------

SHM_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,200}")
SHM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,249}")
SHM_NAME_MAX_BYTES = 249
SHM_MEMBERS = {"pid": 2147483647, "fd": 2147483647, "name": None, "count": 4294967295}


def procfs_usable() -> bool:
    """Whether this process can reach fds through /proc (SPEC.md section 4: "shm" is listed
    only then): /proc/self/fd lists and its links read."""
    try:
        fds = os.listdir("/proc/self/fd")
        if fds:
            os.readlink(f"/proc/self/fd/{fds[0]}")
        return bool(fds)
    except OSError:
        return False


# --- The packed encoding ---------------------------------------------------------------------

# Padded base64 of the standard alphabet (RFC 4648 section 4): whole 4-character groups, "="
# only as the last one or two characters, nothing else (no whitespace, no base64url).
PADDED_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def decode_packed(text: Any) -> list[int]:
    """The numbers of a ``numbersPacked`` value; ValueError says why it is not one."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    if len(text) % 4:
        raise ValueError(f"base64 length {len(text)} is not a multiple of 4")
    if PADDED_BASE64.fullmatch(text) is None:
        raise ValueError("not padded base64 of the standard alphabet")
    if text.endswith("=") and not canonical_pad_bits(text):
        raise ValueError("non-zero pad bits")
    data = base64.b64decode(text)
    if len(data) % 4:
        raise ValueError(f"{len(data)} bytes is not a whole number of 4-byte numbers")
    return list(struct.unpack(f"<{len(data) // 4}I", data))


BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def canonical_pad_bits(text: str) -> bool:
    """The bits of the last character before "=" or "==" that carry no data are zero (SPEC.md
    section 4): 2 bits before "=", 4 before "=="."""
    padding = len(text) - len(text.rstrip("="))
    value = BASE64_ALPHABET.index(text[-padding - 1])
    return value & (0x0F if padding == 2 else 0x03) == 0


def encode_packed(squares: list[int]) -> str:
    """``squaresPacked``: padded base64 of the squares as little-endian u64s."""
    return base64.b64encode(struct.pack(f"<{len(squares)}Q", *squares)).decode("ascii")


_NO_TARGET = object()


def cancel_target(params: Any) -> Any:
    if isinstance(params, dict) and "id" in params and is_valid_id(params["id"]):
        return params["id"]
    return _NO_TARGET


def shutdown_params_ok(call: dict) -> bool:
    return not call["has_params"] or call["params"] in ({}, [])


# --- Input ---------------------------------------------------------------------------------

class Truncated(Exception):
    pass


class Stop(Exception):
    """SIGTERM or SIGINT: stop reading, as at EOF (between frames: 0; inside one: 1)."""


# True from the first byte of a frame until its body is read or skipped: where a stop signal
# falls decides the exit status.
INSIDE_FRAME = {"now": False}


def read_exact(count: int) -> bytes | None:
    """Exactly ``count`` bytes; None at EOF before the first byte; Truncated after it."""
    chunks = []
    remaining = count
    while remaining:
        chunk = os.read(0, min(remaining, 1 << 20))
        if not chunk:
            if remaining == count:
                return None
            raise Truncated(f"{count - remaining} of {count} bytes")
        INSIDE_FRAME["now"] = True
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def skip_exact(count: int) -> None:
    remaining = count
    while remaining:
        chunk = os.read(0, min(remaining, 1 << 16))
        if not chunk:
            raise Truncated(f"skipped {count - remaining} of {count} bytes of an oversized frame")
        remaining -= len(chunk)


def serve(worker: Worker) -> int:
    """Reads frames until EOF or shutdown (returns 0); raises Truncated or Stop."""
    while True:
        worker.slots.acquire()  # at the bound, stop reading: the pipe pushes back
        slot = {"handed_over": False}
        try:
            go_on = serve_one_frame(worker, slot)
        finally:
            if not slot["handed_over"]:
                worker.slots.release()
        if not go_on:
            return 0


def serve_one_frame(worker: Worker, slot: dict) -> bool:
    """Reads one frame and hands it to a thread (with the slot); False at EOF or shutdown."""
    options = worker.options

    def start(calls: list[dict] | None, single: dict | None) -> None:
        slot["handed_over"] = True
        worker.start(calls, single)

    header = read_exact(4)
    if header is None:
        return False
    size = int.from_bytes(header, "big")
    if size > options.max_frame_bytes:
        log.warning("frame of %d bytes refused (limit %d)", size, options.max_frame_bytes)
        worker.write_frame(worker.reply_text(None, error=error_object(
            FRAME_TOO_LARGE, "Frame too large",
            {"frameBytes": size, "maxFrameBytes": options.max_frame_bytes})))
        skip_exact(size)
        INSIDE_FRAME["now"] = False
        return True
    body = read_exact(size)
    if body is None:
        raise Truncated(f"EOF after the header of a {size}-byte frame")
    INSIDE_FRAME["now"] = False
    try:
        message = parse_frame(body)
    except ParseError as error:
        log.info("parse error: %s", error)
        start(None, {"reply": True, "id": None, "error": error_object(PARSE_ERROR, "Parse error")})
        return True
    if isinstance(message, list):
        if not message:
            start(None, {"reply": True, "id": None, "error": error_object(
                INVALID_REQUEST, "Invalid Request: empty batch")})
            return True
        calls = [worker.classify(entry) for entry in message]
        single = None
    else:
        calls = [worker.classify(message)]
        single = calls[0]
    shutting_down = False
    for call in calls:
        worker.register(call)  # before the next frame is read, so a $/cancel behind it finds it
        if call.get("method") == "shutdown" and shutdown_params_ok(call):
            shutting_down = True
    start(None if single is not None else calls, single)
    if shutting_down:
        log.info("shutdown: no more frames are read")
    return not shutting_down


# --- Command line --------------------------------------------------------------------------

class UsageParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 64, like the real worker
        self.print_usage(sys.stderr)
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message}\n")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def frame_limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 4294967295:
        raise argparse.ArgumentTypeError(f"must be between 1 and 4294967295, got {value}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = UsageParser(prog="squares-worker",
                         description="Reference squares worker (length-prefixed JSON-RPC 2.0 "
                                     "over stdin/stdout).")
    parser.add_argument("--parallelism", type=positive, default=len(os.sched_getaffinity(0)),
                        help="reported parallelism (default: active cores)")
    parser.add_argument("--max-in-flight", type=positive, default=64,
                        help="frames processed at once before reading stops (default 64)")
    parser.add_argument("--max-frame-bytes", type=frame_limit, default=67108864,
                        help="largest frame body served, 1 to 4294967295 (default 67108864)")
    parser.add_argument("--log-level", default="info",
                        choices=["trace", "debug", "info", "notice", "warning", "error",
                                 "critical"], help="stderr log level (default info)")
    parser.add_argument("--test-methods", action="store_true",
                        help="enable test/sleep")
    parser.add_argument("--fault", choices=FAULTS,
                        help="misbehave on purpose (for testing a conformance runner)")
    return parser.parse_args(argv)


LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "notice": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
              "critical": logging.CRITICAL}


def main(argv: list[str]) -> int:
    if hasattr(sys, "set_int_max_str_digits"):  # a 5000-digit number is JSON: too_large
        sys.set_int_max_str_digits(0)
    args = parse_args(argv)
    logging.basicConfig(level=LOG_LEVELS[args.log_level], stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")
    options = Options(args)
    if options.fault == "exit-at-once":
        return 0
    if options.fault == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        threading.Event().wait()
    if options.fault == "garbage":
        # The classic bug: a debug print to stdout, outside any frame.
        sys.stdout.buffer.write(b"debug: worker starting\n")
        sys.stdout.buffer.flush()
    if options.fault == "flood-stderr":
        # Legal but hostile: a runner that does not drain stderr deadlocks on this.
        line = "flood " * 20 + "\n"
        sys.stderr.write(line * ((1 << 20) // len(line)))
        sys.stderr.flush()

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker = Worker(options)
    try:
        status = serve(worker)
    except Stop:
        if INSIDE_FRAME["now"]:
            log.error("signal inside a frame: the partial frame is dropped")
            status = 1
        else:
            log.info("signal: stopping as at EOF")
            status = 0
    except Truncated as error:
        log.error("EOF inside a frame: %s", error)
        status = 1
    worker.finish()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
