"""Finding the worker executable, in this order: ``$MY_MODULE_WORKER`` (a path, or a command line
split with ``shlex``), the worker inside this package (``my_module/bin/squares-worker``, put there
by the wheel build), ``squares-worker`` on ``PATH``, then the Swift package's own build output
(``.build/release`` then ``.build/debug``) in the repository this source lives in."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from ._errors import WorkerNotFoundError

ENV_VAR = "MY_MODULE_WORKER"
EXECUTABLE_NAME = "squares-worker"
# Where a wheel puts the worker (python_client/hatch_build.py's WHEEL_PATH names the same place).
PACKAGED_WORKER = Path(__file__).resolve().with_name("bin") / EXECUTABLE_NAME
BUILD_COMMAND = f"swift build -c release --product {EXECUTABLE_NAME}"

Command = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

_PIP_INSTALL = ("install my_module with `pip install ./python_client` from the repository root (that "
                "builds the worker and installs it inside the package)")
_POINT_AT = f"put {EXECUTABLE_NAME} on PATH, set {ENV_VAR} to its path or to a command line, or pass Worker(command=...)"
_HOW_TO_PROVIDE = (f"{_PIP_INSTALL}, or build it at the repository root with `{BUILD_COMMAND}` (output: "
                   f".build/release/{EXECUTABLE_NAME}) and {_POINT_AT}")


def checked_argv(command: Command, origin: str) -> Tuple[str, ...]:
    """A path, a command line (split like a shell unless it names a file) or an argv, as a runnable argv tuple."""
    if isinstance(command, (str, os.PathLike)):
        text = os.fspath(command)
        argv: Tuple[str, ...] = (text,) if os.path.isfile(text) else tuple(shlex.split(text))
    else:
        argv = tuple(os.fspath(part) for part in command)
    if not argv:
        raise WorkerNotFoundError(f"empty worker command {command!r}")
    program = argv[0]
    if shutil.which(program):  # a name is looked up on PATH, a path (with a directory part) checked as it is
        return argv
    problem = ("is not on PATH" if not os.path.dirname(program) else
               "is not an executable file" if os.path.exists(program) else "does not exist")
    raise WorkerNotFoundError(f"{origin}: {program!r} {problem}; {_HOW_TO_PROVIDE}")


def repository_build_outputs(start: Optional[Path] = None) -> Tuple[Path, ...]:
    """The release then debug worker paths in the first directory above ``start`` holding ``Package.swift``, or ()."""
    here = (start or Path(__file__)).resolve()
    for directory in (here, *here.parents):
        if (directory / "Package.swift").is_file():
            return tuple(directory / ".build" / kind / EXECUTABLE_NAME for kind in ("release", "debug"))
    return ()


def find_worker(command: Optional[Command] = None) -> Tuple[str, ...]:
    """The argv that starts the worker: ``command``, else the lookup above; else ``WorkerNotFoundError`` saying how."""
    if command is not None:
        return checked_argv(command, "Worker(command=...)")
    configured = os.environ.get(ENV_VAR, "")
    if configured.strip():
        return checked_argv(configured, f"${ENV_VAR}={configured!r}")
    candidates = repository_build_outputs()
    for place in map(str, (PACKAGED_WORKER, EXECUTABLE_NAME, *candidates)):  # a path checked as it is, the name on PATH
        found = shutil.which(place)
        if found:
            return (found,)
    tried = [f"${ENV_VAR} (unset)", f"the package's own worker ({PACKAGED_WORKER})", f"{EXECUTABLE_NAME} on PATH"]
    how = _HOW_TO_PROVIDE
    if candidates:
        tried.append(f"the checkout's build output ({', '.join(map(str, candidates))})")
        how = (f"build it with `{BUILD_COMMAND}` in {candidates[0].parents[2]} (output: {candidates[0]}, "
               f"found there by itself), or {_PIP_INSTALL}, or {_POINT_AT}")
    raise WorkerNotFoundError(f"cannot find the {EXECUTABLE_NAME} worker; tried {', '.join(tried)}; {how}")
