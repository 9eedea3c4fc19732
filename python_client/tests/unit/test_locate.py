"""Finding the worker: $MY_MODULE_WORKER, the package's own, PATH, the checkout's build output."""

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
    # As in a source checkout: no worker inside the package (a wheel install has one).
    monkeypatch.setattr(_locate, "PACKAGED_WORKER", tmp_path / "no-package-bin" / "squares-worker")
    return monkeypatch


def on_path(clean_env, tmp_path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    clean_env.setenv("PATH", str(bin_dir))
    return make_executable(bin_dir / _locate.EXECUTABLE_NAME)


def packaged(clean_env, tmp_path) -> Path:
    package_bin = tmp_path / "site-packages" / "my_module" / "bin"
    package_bin.mkdir(parents=True)
    exe = make_executable(package_bin / _locate.EXECUTABLE_NAME)
    clean_env.setattr(_locate, "PACKAGED_WORKER", exe)
    return exe


def test_env_var_path_wins(clean_env, tmp_path) -> None:
    packaged(clean_env, tmp_path)
    on_path(clean_env, tmp_path)
    exe = make_executable(tmp_path / "my worker")  # a path with a space is still a path
    clean_env.setenv(_locate.ENV_VAR, str(exe))
    assert _locate.find_worker() == (str(exe),)


def test_env_var_command_line_is_split(clean_env) -> None:
    clean_env.setenv(_locate.ENV_VAR, f"{sys.executable} -u 'some script.py' --flag")
    assert _locate.find_worker() == (sys.executable, "-u", "some script.py", "--flag")


def test_the_packaged_worker_comes_before_path(clean_env, tmp_path) -> None:
    exe = packaged(clean_env, tmp_path)
    on_path(clean_env, tmp_path)
    assert _locate.find_worker() == (str(exe),)


def test_a_packaged_worker_that_is_not_executable_is_passed_over(clean_env, tmp_path) -> None:
    exe = packaged(clean_env, tmp_path)
    exe.chmod(0o644)
    path_exe = on_path(clean_env, tmp_path)
    assert _locate.find_worker() == (str(path_exe),)


def test_path_lookup_comes_next(clean_env, tmp_path) -> None:
    exe = on_path(clean_env, tmp_path)
    assert _locate.find_worker() == (str(exe),)


def test_the_checkout_build_output_comes_last(clean_env, monkeypatch, tmp_path) -> None:
    release = tmp_path / ".build" / "release" / _locate.EXECUTABLE_NAME
    debug = tmp_path / ".build" / "debug" / _locate.EXECUTABLE_NAME
    debug.parent.mkdir(parents=True)
    make_executable(debug)
    monkeypatch.setattr(_locate, "repository_build_outputs", lambda start=None: (release, debug))
    assert _locate.find_worker() == (str(debug),)
    release.parent.mkdir(parents=True)
    make_executable(release)
    assert _locate.find_worker() == (str(release),)
    path_exe = on_path(clean_env, tmp_path)
    assert _locate.find_worker() == (str(path_exe),)


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


def test_the_packaged_worker_sits_in_the_package() -> None:
    assert _locate.PACKAGED_WORKER == (
        Path(my_module.__file__).resolve().parent / "bin" / _locate.EXECUTABLE_NAME
    )


def test_explicit_command_is_checked(tmp_path) -> None:
    with pytest.raises(my_module.WorkerNotFoundError, match="does not exist"):
        my_module.Worker(tmp_path / "nope")
    not_executable = tmp_path / "plain"
    not_executable.write_text("")
    with pytest.raises(my_module.WorkerNotFoundError, match="not an executable"):
        my_module.Worker([str(not_executable)])
    with pytest.raises(my_module.WorkerNotFoundError, match="not on PATH"):
        my_module.Worker("no-such-program-anywhere --flag")
