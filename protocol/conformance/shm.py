"""Shared-memory segments (protocol 1.2) that a case declares, made before its worker starts."""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import struct
import tempfile
from dataclasses import dataclass
from typing import Any

from .macros import VectorError, expand_macros


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
