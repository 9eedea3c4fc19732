"""What a user reads: the public exceptions print as ``my_module.X``, and a worker that cannot be found is
reported in two lines at most, saying where the lookup looked and the fix that fits the install."""

from __future__ import annotations

import math

import pickle
import traceback
from pathlib import Path

import pytest

import my_module
from my_module import _locate

PUBLIC_EXCEPTIONS = [my_module.WorkerError, my_module.WorkerNotFoundError, my_module.WorkerCrashedError,
                     my_module.ProtocolError]


@pytest.mark.parametrize("cls", PUBLIC_EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_public_exceptions_print_as_my_module_names(cls) -> None:
    exc = cls("what happened")
    assert traceback.format_exception_only(cls, exc) == [f"my_module.{cls.__name__}: what happened\n"]
    assert getattr(my_module, cls.__name__) is cls
    copy = pickle.loads(pickle.dumps(exc))  # pickle finds the class under the name it prints
    assert type(copy) is cls and str(copy) == "what happened"


@pytest.fixture
def nothing_anywhere(monkeypatch, tmp_path):
    """No $MY_MODULE_WORKER, an empty PATH, no worker inside the package."""
    monkeypatch.delenv(_locate.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(_locate, "PACKAGED_WORKER", tmp_path / "site-packages" / "my_module" / "bin" / "squares-worker")
    return monkeypatch


def not_found_message() -> str:
    with pytest.raises(my_module.WorkerNotFoundError) as info:
        my_module.Worker()
    return str(info.value)


def test_not_found_in_an_installed_package_says_reinstall(nothing_anywhere) -> None:
    nothing_anywhere.setattr(_locate, "repository_build_outputs", lambda start=None: ())  # no checkout around
    looked, fix = not_found_message().split("\n")
    assert looked == f"no squares-worker found; looked at $MY_MODULE_WORKER (unset), {_locate.PACKAGED_WORKER}, PATH"
    assert fix.startswith("to fix: reinstall my_module (`pip install --force-reinstall` its wheel or sdist")
    assert fix.endswith(", or set MY_MODULE_WORKER to a worker's path or command line")
    assert "make worker" not in fix


def test_not_found_in_a_checkout_says_make_worker(nothing_anywhere, tmp_path: Path) -> None:
    outputs = (tmp_path / ".build" / "release" / "squares-worker", tmp_path / ".build" / "debug" / "squares-worker")
    nothing_anywhere.setattr(_locate, "repository_build_outputs", lambda start=None: outputs)
    looked, fix = not_found_message().split("\n")
    assert looked.endswith(f", PATH, {outputs[0]}, {outputs[1]}")
    assert fix == f"to fix: run `make worker` in {tmp_path}, or set MY_MODULE_WORKER to a worker's path or command line"


def test_this_checkout_is_told_to_make_worker(nothing_anywhere, monkeypatch) -> None:
    root = _locate.repository_build_outputs()[0].parents[2]
    monkeypatch.setattr(_locate, "repository_build_outputs", lambda start=None: (root / ".build" / "none" / "x",))
    assert f"run `make worker` in {root}," in not_found_message()


def test_a_missing_env_var_worker_names_the_variable_and_the_fix(nothing_anywhere, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-worker"
    nothing_anywhere.setenv("MY_MODULE_WORKER", f"{missing} --log-level debug")
    assert not_found_message() == (f"$MY_MODULE_WORKER: '{missing}' does not exist; set MY_MODULE_WORKER to a "
                                   "squares-worker's path or command line, or unset it")


def test_a_missing_explicit_command_names_it(tmp_path: Path) -> None:
    with pytest.raises(my_module.WorkerNotFoundError) as info:
        my_module.Worker(tmp_path / "nope")
    assert str(info.value) == (f"Worker(command=...): '{tmp_path / 'nope'}' does not exist; "
                               "pass the path or command line of a squares-worker")
    with pytest.raises(my_module.WorkerNotFoundError, match=r"^Worker\(command=\.\.\.\): empty worker command"):
        my_module.Worker([])


# -- options: each checked by type and range, the message naming it ------------------------------


@pytest.mark.parametrize("options, error, says", [
    ({"retries": 1.5}, TypeError, "retries must be an int >= 0, not 1.5"),
    ({"retries": -1}, ValueError, "retries must be an int >= 0, not -1"),
    ({"retries": True}, TypeError, "retries must be an int"),
    ({"chunk_size": 0}, ValueError, "chunk_size must be an int >= 1, not 0"),
    ({"max_frame_bytes": 100}, ValueError, "max_frame_bytes must be an int >= 1024, not 100"),
    ({"max_frame_bytes": "64M"}, TypeError, "max_frame_bytes must be an int >= 1024"),
    ({"timeout": "x"}, TypeError, "timeout must be a positive number of seconds or None, not 'x'"),
    ({"timeout": -1}, ValueError, "timeout must be a positive number of seconds or None, not -1"),
    ({"timeout": 0}, ValueError, "timeout must be a positive number"),
    ({"startup_timeout": float("nan")}, ValueError, "startup_timeout must be a positive number"),
    ({"shutdown_timeout": None}, TypeError, "shutdown_timeout must be a positive number of seconds, not None"),
    ({"encodings": "shm"}, TypeError, "encodings must be a tuple or list of names"),
    ({"encodings": ("zip",)}, ValueError, "encodings must name one or more of"),
    ({"encodings": ()}, ValueError, "encodings must name one or more of"),
])
def test_each_option_is_checked_and_named(worker_command, options, error, says) -> None:
    with pytest.raises(error) as caught:
        my_module.Worker(worker_command, **options)
    assert says in str(caught.value)


def test_a_calls_timeout_is_checked_and_named(worker_command) -> None:
    with my_module.Worker(worker_command) as w:
        with pytest.raises(TypeError, match="timeout must be a positive number of seconds or None, not 'x'"):
            w.calculate_squares([1], timeout="x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            w.submit([1], timeout=-2)
        assert w.calculate_squares([3], timeout=math.inf) == [9]
