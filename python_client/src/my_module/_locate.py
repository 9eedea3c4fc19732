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

Command = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

# What to do, by where the lookup failed: a wheel (or sdist) build puts the worker inside the package, so an
# installed package without it is a broken install; a checkout has `make worker`.
_REINSTALL = "reinstall my_module (`pip install --force-reinstall` its wheel or sdist: their build puts the worker inside)"
_OR_POINT_AT = f"or set {ENV_VAR} to a worker's path or command line"
_FIX = {"Worker(command=...)": "pass the path or command line of a squares-worker",
        f"${ENV_VAR}": f"set {ENV_VAR} to a squares-worker's path or command line, or unset it"}


def checked_argv(command: Command, origin: str) -> Tuple[str, ...]:
    """A path, a command line (split like a shell unless it names a file) or an argv, as a runnable argv tuple;
    ``origin`` (``"$MY_MODULE_WORKER"`` or ``"Worker(command=...)"``) is where it came from, named in the error."""
    if isinstance(command, (str, os.PathLike)):
        text = os.fspath(command)
        argv: Tuple[str, ...] = (text,) if os.path.isfile(text) else tuple(shlex.split(text))
    else:
        argv = tuple(os.fspath(part) for part in command)
    if not argv:
        raise WorkerNotFoundError(f"{origin}: empty worker command {command!r}; {_FIX[origin]}")
    program = argv[0]
    if shutil.which(program):  # a name is looked up on PATH, a path (with a directory part) checked as it is
        return argv
    problem = ("is not on PATH" if not os.path.dirname(program) else
               "is not an executable file" if os.path.exists(program) else "does not exist")
    raise WorkerNotFoundError(f"{origin}: {program!r} {problem}; {_FIX[origin]}")


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
        return checked_argv(configured, f"${ENV_VAR}")
    candidates = repository_build_outputs()
    for place in map(str, (PACKAGED_WORKER, EXECUTABLE_NAME, *candidates)):  # a path checked as it is, the name on PATH
        found = shutil.which(place)
        if found:
            return (found,)
    looked = ", ".join([f"${ENV_VAR} (unset)", str(PACKAGED_WORKER), "PATH", *map(str, candidates)])
    fix = f"run `make worker` in {candidates[0].parents[2]}" if candidates else _REINSTALL
    raise WorkerNotFoundError(f"no {EXECUTABLE_NAME} found; looked at {looked}\nto fix: {fix}, {_OR_POINT_AT}")
