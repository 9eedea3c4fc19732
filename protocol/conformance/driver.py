"""Running one case: the worker process, the thread that feeds it the steps, the thread that
reads its frames, and the encodings probe that decides which cases to skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from .jsonexact import dumps, loads, short
from .schema import Validator
from .shm import SHM_INITIALIZE_ID, ShmContext
from .vectors import Case, Step, framed
from .match import check_expectations, check_schemas, check_shm_initialize


STDERR_TAIL_BYTES = 2000


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


def decode_frames(frames: list[bytes], problems: list[str]) -> list[Any]:
    replies = []
    for index, frame in enumerate(frames):
        try:
            replies.append(loads(frame.decode("utf-8")))
        except (UnicodeDecodeError, ValueError) as error:
            problems.append(f"reply frame {index} is not UTF-8 JSON ({error}): {frame[:80]!r}")
            replies.append(frame.decode("utf-8", "replace"))
    return replies


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
