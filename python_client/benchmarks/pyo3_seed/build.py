"""Build the seed's PyO3 module (``Cargo.toml`` and ``src/`` beside this file) and import it.

Usage (from the repository root; ``make bench-e2e`` runs it with ``--install-deps``)::

    python python_client/benchmarks/pyo3_seed/build.py [--install-deps]

The module is built for the interpreter that runs this (``PYO3_PYTHON``), in release mode, into
``.build-pyo3/`` at the repository root (outside git), and is importable only from there, as
``my_module_pyo3``. Cargo works offline: its crates.io source is replaced by the crate sources
that Debian's ``librust-pyo3-dev`` installs (PyO3 0.17 and its dependencies), through a
``.cargo/config.toml`` written into the build folder, so nothing is downloaded and the checkout
holds no lock file or build output. ``--install-deps`` installs that package with apt-get when
cargo is there, it is missing, and this runs as root. Without cargo or those sources the module
is unavailable: this prints why and exits 0, and ``bench_e2e.py`` leaves the PyO3 rows out with
the same note. A failing build is an error.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import List

MODULE = "my_module_pyo3"
HERE = Path(__file__).resolve().parent
BUILD = HERE.parents[2] / ".build-pyo3"
# Where Debian's librust-*-dev packages put crate sources, laid out as a cargo directory source.
DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")
DEBIAN_PACKAGE = "librust-pyo3-dev"
PYO3_SERIES = "0.17"  # the series Cargo.toml asks for and Debian bookworm ships

CARGO_CONFIG = f"""\
[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "{DEBIAN_REGISTRY}"

[net]
offline = true
"""


class Unavailable(Exception):
    """The module cannot be built here (no cargo, no PyO3 sources); the message says why."""


def module_path() -> Path:
    """Where the built module is, named for this interpreter (``...cpython-311-x86_64...so``)."""
    return BUILD / (MODULE + importlib.machinery.EXTENSION_SUFFIXES[0])


def _sources() -> List[Path]:
    return [HERE / "Cargo.toml", *sorted((HERE / "src").rglob("*.rs"))]


def _fingerprint() -> str:
    """What the built module depends on: the sources, and the interpreter it was built for."""
    digest = hashlib.sha256(sys.executable.encode())
    for path in _sources():
        digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _stamp() -> Path:
    return module_path().with_name(MODULE + ".fingerprint")


def is_built() -> bool:
    """Whether the module is built from the current sources for this interpreter."""
    stamp = _stamp()
    return module_path().exists() and stamp.exists() and stamp.read_text() == _fingerprint()


def _pyo3_sources() -> List[Path]:
    return sorted(DEBIAN_REGISTRY.glob(f"pyo3-{PYO3_SERIES}.*"))


def install_deps() -> None:
    """Install Debian's PyO3 sources if cargo is here and they are not; a note if impossible."""
    if shutil.which("cargo") is None or _pyo3_sources():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(f"pyo3_seed: {DEBIAN_PACKAGE} is not installed, and this is not root with apt-get "
              f"to install it", file=sys.stderr)
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", DEBIAN_PACKAGE]
    if subprocess.run(install, env=env).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def build() -> Path:
    """Build the module if it is not current; its path. Raises Unavailable or CalledProcessError."""
    if is_built():
        return module_path()
    cargo = shutil.which("cargo")
    if cargo is None:
        raise Unavailable("cargo is not on PATH, so the PyO3 baseline cannot be built")
    if not _pyo3_sources():
        raise Unavailable(f"no PyO3 {PYO3_SERIES} sources in {DEBIAN_REGISTRY} "
                          f"(apt-get install {DEBIAN_PACKAGE}; make bench-e2e does it as root)")
    crate = BUILD / "crate"
    if crate.exists():
        shutil.rmtree(crate)  # so that a source removed here is gone there too
    (crate / ".cargo").mkdir(parents=True)
    shutil.copy2(HERE / "Cargo.toml", crate)
    shutil.copytree(HERE / "src", crate / "src")
    (crate / ".cargo" / "config.toml").write_text(CARGO_CONFIG)
    target = BUILD / "target"
    env = dict(os.environ, PYO3_PYTHON=sys.executable, CARGO_TARGET_DIR=str(target))
    print(f"pyo3_seed: cargo build --release (PyO3 from {DEBIAN_REGISTRY}) ...", file=sys.stderr, flush=True)
    subprocess.run([cargo, "build", "--release", "--offline"], cwd=crate, env=env, check=True)
    built = target / "release" / f"lib{MODULE}.so"
    partial = module_path().with_suffix(".partial")
    shutil.copy2(built, partial)
    os.replace(partial, module_path())  # a reader never imports a half-copied file
    _stamp().write_text(_fingerprint())
    return module_path()


def load(build_if_needed: bool = True) -> ModuleType:
    """The built module, imported (built first if it is not current and ``build_if_needed``).

    Raises Unavailable when it is not built and cannot be (or may not be: ``build_if_needed``
    false), CalledProcessError when cargo fails.
    """
    if not is_built():
        if not build_if_needed:
            raise Unavailable("not built (make bench-e2e builds it)")
        build()
    spec = importlib.util.spec_from_file_location(MODULE, module_path())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install-deps", action="store_true",
                        help=f"apt-get install {DEBIAN_PACKAGE} first when cargo is here and it is not")
    args = parser.parse_args()
    if args.install_deps:
        install_deps()
    try:
        module = load()
    except Unavailable as e:
        print(f"pyo3_seed: skipped: {e}", file=sys.stderr)
        return
    numbers = [0, 1, 2, 65535, 4294967295]
    for function in (module.calculate_squares, module.calculate_squares_one_thread):
        squares = function(numbers)
        if squares != [n * n for n in numbers]:
            sys.exit(f"pyo3_seed: {function.__name__} of {module_path()} squared {numbers} as {squares}")
    print(f"pyo3_seed: {module_path()}")


if __name__ == "__main__":
    main()
