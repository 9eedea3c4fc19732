"""Finding the worker executable.

Order: the ``MY_MODULE_WORKER`` environment variable (a path, or a command line split with
``shlex``), then the worker installed inside this package (``my_module/bin/squares-worker``, put
there by the wheel build), then ``squares-worker`` on ``PATH``, then the Swift package's own
build output (``.build/release`` then ``.build/debug``) in the repository this package's source
lives in (an editable install or a source checkout).
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

# Where a wheel puts the worker (python_client/hatch_build.py's WHEEL_PATH names the same place).
PACKAGED_WORKER = Path(__file__).resolve().with_name("bin") / EXECUTABLE_NAME

BUILD_COMMAND = f"swift build -c release --product {EXECUTABLE_NAME}"

Command = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

_PIP_INSTALL = (
    "install my_module with `pip install ./python_client` from the repository root (that builds "
    "the worker and installs it inside the package)"
)
_POINT_AT = (
    f"put {EXECUTABLE_NAME} on PATH, set {ENV_VAR} to its path or to a command line, or pass "
    f"Worker(command=...)"
)
_HOW_TO_PROVIDE = (
    f"{_PIP_INSTALL}, or build it at the repository root with `{BUILD_COMMAND}` (output: "
    f".build/release/{EXECUTABLE_NAME}) and {_POINT_AT}"
)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


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
        if _is_executable(Path(program)):
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
    Raises ``WorkerNotFoundError`` naming every place tried, with instructions, when nothing
    usable is found.
    """
    if command is not None:
        return check_executable(split_command(command), "Worker(command=...)")
    configured = os.environ.get(ENV_VAR)
    if configured is not None and configured.strip():
        return check_executable(split_command(configured), f"${ENV_VAR}={configured!r}")
    if _is_executable(PACKAGED_WORKER):
        return (str(PACKAGED_WORKER),)
    on_path = shutil.which(EXECUTABLE_NAME)
    if on_path is not None:
        return (on_path,)
    candidates = repository_build_outputs()
    for candidate in candidates:
        if _is_executable(candidate):
            return (str(candidate),)
    tried = [
        f"${ENV_VAR} (unset)",
        f"the package's own worker ({PACKAGED_WORKER})",
        f"{EXECUTABLE_NAME} on PATH",
    ]
    if candidates:
        tried.append(f"the checkout's build output ({', '.join(map(str, candidates))})")
        how = (
            f"build it with `{BUILD_COMMAND}` in {candidates[0].parents[2]} (output: "
            f"{candidates[0]}, found there by itself), or {_PIP_INSTALL}, or {_POINT_AT}"
        )
    else:
        how = _HOW_TO_PROVIDE
    raise WorkerNotFoundError(
        f"cannot find the {EXECUTABLE_NAME} worker; tried {', '.join(tried)}; {how}"
    )
