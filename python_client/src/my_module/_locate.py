"""Finding the worker executable.

Order: the ``MY_MODULE_WORKER`` environment variable (a path, or a command line split with
``shlex``), then ``squares-worker`` on ``PATH``, then the Swift package's own build output
(``.build/release`` then ``.build/debug``) in the repository this package's source lives in.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from ._errors import WorkerNotFoundError

ENV_VAR = "MY_MODULE_WORKER"
EXECUTABLE_NAME = "squares-worker"

Command = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

_HOW_TO_PROVIDE = (
    f"build it with `swift build -c release` at the root of the my_module repository "
    f"(found automatically when my_module is used from that checkout), put `{EXECUTABLE_NAME}` "
    f"on PATH, set {ENV_VAR} to its path or to a command line, or pass "
    f"Worker(command=...)"
)


def split_command(command: Command) -> Tuple[str, ...]:
    """Turn a path, a command line or an argv sequence into an argv tuple.

    A string that names an existing file is a path (spaces and all); any other string is a
    command line, split like a POSIX shell would. Raises ``WorkerNotFoundError`` if it is
    empty.
    """
    if isinstance(command, (str, os.PathLike)):
        text = os.fspath(command)
        argv: Tuple[str, ...] = (text,) if os.path.isfile(text) else tuple(shlex.split(text))
    else:
        argv = tuple(os.fspath(part) for part in command)
    if not argv:
        raise WorkerNotFoundError(f"empty worker command {command!r}")
    return argv


def check_executable(argv: Tuple[str, ...], origin: str) -> Tuple[str, ...]:
    """Check that ``argv[0]`` can be executed; return ``argv``.

    Raises ``WorkerNotFoundError`` naming ``origin`` (where the command came from).
    """
    program = argv[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        if os.path.isfile(program) and os.access(program, os.X_OK):
            return argv
        problem = "is not an executable file" if os.path.exists(program) else "does not exist"
        raise WorkerNotFoundError(f"{origin}: {program!r} {problem}; {_HOW_TO_PROVIDE}")
    if shutil.which(program) is None:
        raise WorkerNotFoundError(f"{origin}: {program!r} is not on PATH; {_HOW_TO_PROVIDE}")
    return argv


def repository_build_outputs(start: Optional[Path] = None) -> Tuple[Path, ...]:
    """The Swift package's release then debug worker paths, if this source is in its repo.

    Walks up from ``start`` (default: this package's directory) to the first directory that
    holds ``Package.swift``. Returns () when there is none (e.g. an installed wheel).
    """
    here = (start or Path(__file__)).resolve()
    for directory in (here, *here.parents):
        if (directory / "Package.swift").is_file():
            build = directory / ".build"
            return (
                build / "release" / EXECUTABLE_NAME,
                build / "debug" / EXECUTABLE_NAME,
            )
    return ()


def find_worker(command: Optional[Command] = None) -> Tuple[str, ...]:
    """Return the argv that starts the worker.

    ``command`` (if given) wins; otherwise the lookup order of this module applies.
    Raises ``WorkerNotFoundError`` with instructions when nothing usable is found.
    """
    if command is not None:
        return check_executable(split_command(command), "Worker(command=...)")
    configured = os.environ.get(ENV_VAR)
    if configured is not None and configured.strip():
        return check_executable(split_command(configured), f"${ENV_VAR}={configured!r}")
    on_path = shutil.which(EXECUTABLE_NAME)
    if on_path is not None:
        return (on_path,)
    candidates = repository_build_outputs()
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return (str(candidate),)
    looked = ", ".join(str(c) for c in candidates) or "no Swift package around this source"
    raise WorkerNotFoundError(
        f"cannot find the {EXECUTABLE_NAME} worker (${ENV_VAR} is unset, it is not on PATH, "
        f"and the build output is missing: {looked}); {_HOW_TO_PROVIDE}"
    )
