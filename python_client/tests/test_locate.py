"""Finding the worker: $MY_MODULE_WORKER, then PATH, then the repository's build output."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

import my_module
from my_module import _locate


def make_executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv(_locate.ENV_VAR, raising=False)
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    return monkeypatch


def test_env_var_path_wins(clean_env, tmp_path) -> None:
    exe = make_executable(tmp_path / "my worker")  # a path with a space is still a path
    clean_env.setenv(_locate.ENV_VAR, str(exe))
    assert _locate.find_worker() == (str(exe),)


def test_env_var_command_line_is_split(clean_env) -> None:
    clean_env.setenv(_locate.ENV_VAR, f"{sys.executable} -u 'some script.py' --flag")
    assert _locate.find_worker() == (sys.executable, "-u", "some script.py", "--flag")


def test_path_lookup_comes_next(clean_env, tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = make_executable(bin_dir / _locate.EXECUTABLE_NAME)
    clean_env.setenv("PATH", str(bin_dir))
    assert _locate.find_worker() == (str(exe),)


def test_repository_build_output_release_then_debug(tmp_path) -> None:
    (tmp_path / "Package.swift").write_text("// swift-tools-version:6.0\n")
    package_dir = tmp_path / "python_client" / "src" / "my_module"
    package_dir.mkdir(parents=True)
    release, debug = _locate.repository_build_outputs(package_dir / "__init__.py")
    assert release == tmp_path / ".build" / "release" / _locate.EXECUTABLE_NAME
    assert debug == tmp_path / ".build" / "debug" / _locate.EXECUTABLE_NAME


def test_this_checkout_is_found_from_the_package_source() -> None:
    outputs = _locate.repository_build_outputs()
    assert outputs, "python_client/src/my_module lives under the Swift package's root"
    assert all((p.parents[2] / "Package.swift").is_file() for p in outputs)


def test_explicit_command_is_checked(tmp_path) -> None:
    with pytest.raises(my_module.WorkerNotFoundError, match="does not exist"):
        my_module.Worker(tmp_path / "nope")
    not_executable = tmp_path / "plain"
    not_executable.write_text("")
    with pytest.raises(my_module.WorkerNotFoundError, match="not an executable"):
        my_module.Worker([str(not_executable)])
    with pytest.raises(my_module.WorkerNotFoundError, match="not on PATH"):
        my_module.Worker("no-such-program-anywhere --flag")


def test_not_found_says_how_to_build_or_point_at_the_worker(clean_env, monkeypatch) -> None:
    monkeypatch.setattr(_locate, "repository_build_outputs", lambda start=None: ())
    with pytest.raises(my_module.WorkerNotFoundError) as info:
        _locate.find_worker()
    message = str(info.value)
    for hint in ("swift build -c release", "PATH", _locate.ENV_VAR, "Worker(command=...)"):
        assert hint in message
