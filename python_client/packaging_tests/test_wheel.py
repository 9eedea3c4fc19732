"""The wheel and the sdist, as a new user gets them: built by pip, installed into a fresh venv.

The wheel must carry its worker, claim the platform tag the worker meets (``auditwheel show``
reads the binary), and give an ``import my_module`` that works from anywhere: the calls run in a
fresh venv, from a directory outside the checkout, with no ``MY_MODULE_WORKER`` and nothing of
the checkout on ``PYTHONPATH`` or ``PATH``; ``pip uninstall`` then takes the worker away too.
The same wheel is installed into other Pythons found on the machine. The sdist must build the
worker by itself, and a build without Swift must say what to install.

Run by ``make test-wheel`` (part of ``make test``), apart from python_client/tests because it
builds the worker: in a checkout it runs the same ``swift build`` as ``make worker``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
PROJECT = CHECKOUT / "python_client"
WORKER_IN_WHEEL = "my_module/bin/squares-worker"
# Size limits (issue 21): the worker ships stripped (27 MB with its symbols and debug information).
MAX_WHEEL_BYTES = 6_000_000
MAX_WORKER_BYTES = 16 * 2**20
# Every supported minor version (requires-python >= 3.9) that a newer release may add to.
SUPPORTED_MINORS = range(9, 20)

# The checked call (numbers on stdin): 4294967295's square is past 2**64 - 2**33, far past the
# 2**53 a float holds; 100,000 more numbers take the chunked path.
PROBE_NUMBERS = [0, 1, 2, 65535, 65536, 4294967295] + list(range(100000))
PROBE = """
import json, sys, my_module
from my_module import _locate
numbers = json.load(sys.stdin)
print(json.dumps({
    "module": my_module.__file__,
    "worker": _locate.find_worker()[0],
    "sys_path": sys.path,
    "squares": my_module.calculate_squares(numbers),
}))
"""


def run(argv: Sequence[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, **kwargs
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, argv))} exited {done.returncode}\n"
        f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    )
    return done


def inside_checkout(path: str) -> bool:
    try:
        Path(path).resolve().relative_to(CHECKOUT)
    except ValueError:
        return False
    return True


def clean_env(drop_path_with: Optional[str] = None) -> Dict[str, str]:
    """This process's environment less everything that could lead to the checkout's worker."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MY_MODULE_WORKER", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    keep = []
    for entry in env.get("PATH", os.defpath).split(os.pathsep):
        if not entry or inside_checkout(entry):
            continue
        if drop_path_with and os.access(os.path.join(entry, drop_path_with), os.X_OK):
            continue
        keep.append(entry)
    env["PATH"] = os.pathsep.join(keep)
    return env


def wheel_tag(wheel: Path) -> str:
    # name-version-python-abi-platform.whl (PEP 427)
    return wheel.name[: -len(".whl")].split("-", 2)[2]


def install(python: str, wheel: Path, venv: Path) -> Path:
    """A fresh venv of ``python`` with only ``wheel`` installed; returns its interpreter."""
    run([python, "-m", "venv", str(venv)], env=clean_env())
    venv_python = venv / "bin" / "python"
    run(
        [str(venv_python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
        env=clean_env(),
    )
    return venv_python


def probe(venv_python: Path, cwd: Path) -> dict:
    """Run PROBE with the venv's Python, from ``cwd``, in a clean environment."""
    assert not inside_checkout(str(cwd))
    done = run(
        [str(venv_python), "-c", PROBE],
        input=json.dumps(PROBE_NUMBERS), cwd=cwd, env=clean_env(), timeout=120,
    )  # fmt: skip
    return json.loads(done.stdout)


def site_packages(venv_python: Path) -> Path:
    out = run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    return Path(out.stdout.strip())


def assert_squares_from_the_installed_package(venv_python: Path, cwd: Path) -> Path:
    result = probe(venv_python, cwd)
    package = site_packages(venv_python) / "my_module"
    assert Path(result["module"]).parent == package, "my_module imported from the venv"
    assert not [p for p in result["sys_path"] if p and inside_checkout(p)]
    assert result["worker"] == str(package / "bin" / "squares-worker"), "the packaged worker runs"
    assert result["squares"][:6] == [0, 1, 4, 4294836225, 4294967296, 18446744065119617025]
    assert result["squares"] == [n * n for n in PROBE_NUMBERS]
    script = venv_python.parent / "squares"  # the console script: python -m my_module's command line
    done = run([str(script), "3", "4294967295"], cwd=cwd, env=clean_env(), timeout=120)
    assert done.stdout == "9 18446744065119617025\n"
    return package


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel ./python_client``, as a user would build it (with pip's build isolation)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(PROJECT)],
        cwd=out,
        timeout=1800,
    )
    (built,) = out.glob("my_module-*.whl")
    return built


def test_the_wheel_carries_an_executable_worker(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(WORKER_IN_WHEEL)
        name, version = wheel.name.split("-")[:2]
        metadata = archive.read(f"{name}-{version}.dist-info/WHEEL").decode()
    assert (info.external_attr >> 16) & 0o777 == 0o755
    assert info.file_size > 0
    assert "Root-Is-Purelib: false" in metadata
    assert f"Tag: {wheel_tag(wheel)}" in metadata


def elf_section_names(binary: bytes) -> List[str]:
    """The names of an ELF64 little-endian file's sections, read from its section headers."""
    assert binary[:6] == b"\x7fELF\x02\x01", "an ELF64 little-endian executable"
    shoff, = struct.unpack_from("<Q", binary, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", binary, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", binary, shoff + i * shentsize) for i in range(shnum)]
    names_at, names_size = headers[shstrndx][4], headers[shstrndx][5]
    names = binary[names_at : names_at + names_size]
    return [names[h[0] : names.index(b"\0", h[0])].decode() for h in headers]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the worker's ELF section headers")
def test_the_wheel_is_small_and_its_worker_stripped(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        worker = archive.read(WORKER_IN_WHEEL)
    sections = elf_section_names(worker)
    assert ".text" in sections and ".dynsym" in sections, sections  # the reader reads real headers
    assert not [s for s in sections if s == ".symtab" or s.startswith(".debug")], f"not stripped: {sections}"
    assert len(worker) <= MAX_WORKER_BYTES, f"the worker is {len(worker):,} bytes"
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES, f"the wheel is {wheel.stat().st_size:,} bytes"


def test_the_build_leaves_the_checkout_worker_its_symbols(wheel: Path) -> None:
    """``make worker``'s binary, the one the wheel's was stripped from, keeps them for backtraces."""
    built = CHECKOUT / ".build" / "release" / "squares-worker"
    if not built.is_file() or not sys.platform.startswith("linux"):
        pytest.skip("no ELF .build/release/squares-worker here (an sdist or non-Linux build)")
    assert ".symtab" in elf_section_names(built.read_bytes())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel reads Linux ELF wheels")
def test_the_platform_tag_is_the_one_auditwheel_reads_off_the_worker(wheel: Path) -> None:
    """One py3 wheel for every Python, tagged manylinux for the newest glibc the worker needs."""
    tag = wheel_tag(wheel)
    claimed = re.fullmatch(r"py3-none-manylinux_(\d+)_(\d+)_(\w+)", tag)
    assert claimed, f"a py3-none-manylinux_X_Y_<arch> wheel, not {tag}"
    report = json.loads(run([sys.executable, "-m", "auditwheel", "show", "--json", str(wheel)]).stdout)
    assert not report["pure"]
    assert report["external_libs"] == {}, "the worker needs no library outside the manylinux set"
    needed = max(
        (int(m.group(1)), int(m.group(2)))
        for versions in report["versioned_symbols"].values()
        for m in map(re.compile(r"GLIBC_(\d+)\.(\d+)").fullmatch, versions)
        if m
    )
    glibc = (int(claimed.group(1)), int(claimed.group(2)))
    assert glibc == needed, f"the tag claims glibc {glibc}; the worker needs {needed}"
    # auditwheel's tag is its most compatible policy the binary meets: the claim must be one.
    policy = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", report["overall_tag"])
    assert policy, report["overall_tag"]
    assert policy.group(3) == claimed.group(3), "same architecture"
    assert (int(policy.group(1)), int(policy.group(2))) <= glibc


def test_the_installed_wheel_works_outside_the_checkout_and_uninstalls_whole(
    wheel: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    venv_python = install(sys.executable, wheel, tmp_path / "venv")
    package = assert_squares_from_the_installed_package(venv_python, elsewhere)

    run([str(venv_python), "-m", "pip", "uninstall", "--yes", "my_module"], env=clean_env())
    assert not (package / "bin" / "squares-worker").exists(), "pip uninstall removes the worker"
    assert not package.exists()


def other_pythons() -> List[str]:
    """Interpreters of other supported versions: pythonX.Y on PATH, then pyenv's versions."""
    roots = [os.environ.get("PYENV_ROOT", "")]
    if shutil.which("pyenv"):
        roots.append(subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip())
    found = {}
    for minor in SUPPORTED_MINORS:
        if minor == sys.version_info[1]:
            continue
        name = f"python3.{minor}"
        candidates = [shutil.which(name) or ""]
        candidates += sorted(
            path for root in roots if root for path in glob.glob(f"{root}/versions/3.{minor}.*/bin/{name}")
        )
        for candidate in filter(None, candidates):
            # A pyenv shim is on PATH for every installed version but runs only the selected one.
            check = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, %d))" % minor],
                capture_output=True, text=True, env=clean_env(),
            )  # fmt: skip
            if check.stdout.strip() == "True":
                found[minor] = candidate
                break
    return [found[m] for m in sorted(found)]


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_the_same_wheel_serves_other_pythons(wheel: Path, tmp_path: Path, which: str) -> None:
    others = other_pythons()
    if not others or (which == "newest" and len(others) < 2):
        pytest.skip(
            f"no {'second ' if others else ''}other Python 3.{SUPPORTED_MINORS[0]}+ on this machine "
            f"(python3.X on PATH or under pyenv's versions) to install the wheel into"
        )
    python = others[0] if which == "oldest" else others[-1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    venv_python = install(python, wheel, tmp_path / "venv")
    assert_squares_from_the_installed_package(venv_python, elsewhere)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(PROJECT)], cwd=out)
    (built,) = out.glob("my_module-*.tar.gz")
    return built


def test_the_sdist_carries_the_swift_package(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for tracked in run(["git", "-C", str(CHECKOUT), "ls-files", "Package.swift", "Sources", "Tests"]).stdout.split():
        assert f"swift/{tracked}" in names, f"the sdist lacks {tracked}"
    assert "hatch_build.py" in names and "src/my_module/_locate.py" in names


def test_a_build_without_swift_says_what_to_install(sdist: Path, tmp_path: Path) -> None:
    env = clean_env(drop_path_with="swift")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path), str(sdist)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "needs Swift 6 or newer on PATH" in output, output[-3000:]
    assert "Install a Swift 6 toolchain" in output
    assert not list(tmp_path.glob("*.whl"))


def test_the_sdist_builds_a_wheel_with_its_worker(sdist: Path, tmp_path: Path) -> None:
    """``pip install my_module-….tar.gz``: a cold release build of the worker from the sdist."""
    wheelhouse = tmp_path / "wheelhouse"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheelhouse), str(sdist)],
        cwd=tmp_path,
        timeout=3600,
    )
    (built,) = wheelhouse.glob("my_module-*.whl")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    venv_python = install(sys.executable, built, tmp_path / "venv")
    assert_squares_from_the_installed_package(venv_python, elsewhere)
