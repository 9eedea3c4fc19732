"""Hatchling build hook: compile the Swift worker and ship it inside the wheel.

A wheel of my_module carries ``squares-worker`` as ``my_module/bin/squares-worker``, the way a
maturin or setuptools-rust wheel carries its compiled code, so that one ``pip install`` gives an
``import my_module`` that works anywhere. The hook runs the same build as ``make worker``
(release, Swift standard library linked statically, so the binary needs nothing from the
toolchain at run time), ships a stripped copy of it (no symbol table, no debug information: about
half the size; ``make worker``'s own binary keeps both, for backtraces with names), and tags the
wheel for the platform the binary needs: the worker does not load into Python, so one
``py3-none-<platform>`` wheel serves every supported Python.

The Swift package is the repository root, one level above this file, in a checkout; an sdist
carries it in ``swift/`` (pyproject.toml's sdist ``force-include``). An editable install builds
nothing: it runs from the checkout, whose ``.build`` output my_module finds by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from packaging.tags import platform_tags

PRODUCT = "squares-worker"
# Where the worker sits in the wheel; my_module/_locate.py's PACKAGED_WORKER names the same place.
WHEEL_PATH = f"my_module/bin/{PRODUCT}"
SDIST_SWIFT_DIR = "swift"

# Linking the Swift runtime statically is supported on Linux only; on macOS it is part of the OS.
STATIC_STDLIB = ["--static-swift-stdlib"] if sys.platform.startswith("linux") else []

NO_SWIFT = (
    "building my_module compiles its worker, squares-worker, from the Swift package at {package}, "
    "and that needs Swift 6 or newer on PATH (`swift --version` finds none). Install a Swift 6 "
    "toolchain (https://www.swift.org/install), then run the same pip command again."
)


class SquaresWorkerBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: Dict[str, Any]) -> None:
        if version == "editable":
            return
        package = swift_package(Path(self.root))
        binary = build_worker(package)
        self._scratch = tempfile.mkdtemp(prefix="my_module-wheel-")
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-{platform_tag(binary)}"
        build_data["force_include"][str(stripped_copy(binary, Path(self._scratch)))] = WHEEL_PATH

    def finalize(self, version: str, build_data: Dict[str, Any], artifact_path: str) -> None:
        if getattr(self, "_scratch", None):
            shutil.rmtree(self._scratch, ignore_errors=True)


def swift_package(root: Path) -> Path:
    """The directory holding Package.swift: the sdist's copy, else the checkout's root."""
    for candidate in (root / SDIST_SWIFT_DIR, root.parent):
        if (candidate / "Package.swift").is_file():
            return candidate
    raise RuntimeError(
        f"cannot build my_module's worker: no Package.swift in {root / SDIST_SWIFT_DIR} (an sdist) "
        f"or {root.parent} (a checkout of the repository)"
    )


def build_worker(package: Path) -> Path:
    """Run the release build of the worker in ``package``; return the executable's path."""
    swift = shutil.which("swift")
    if swift is None:
        raise RuntimeError(NO_SWIFT.format(package=package))
    command = [
        swift, "build", "--package-path", str(package),
        "-c", "release", *STATIC_STDLIB, "--product", PRODUCT,
    ]  # fmt: skip
    # swift's progress goes to our stderr: pip shows it with -v, and always when the build fails.
    print("my_module: " + " ".join(command), file=sys.stderr, flush=True)
    built = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr)
    if built.returncode != 0:
        raise RuntimeError(
            f"building squares-worker failed (exit {built.returncode}): {' '.join(command)}"
        )
    bin_dir = subprocess.run(
        [*command[:-2], "--show-bin-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    binary = Path(bin_dir) / PRODUCT
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"swift build succeeded but left no executable at {binary}")
    return binary


def stripped_copy(binary: Path, directory: Path) -> Path:
    """``binary`` without its symbol table and debug information, copied into ``directory``.

    The build's own binary stays as it is: ``make worker`` shares it, and its symbols name the
    frames of a crash's backtrace. The toolchain's ``llvm-objcopy`` (next to ``swift``) does it,
    else ``strip`` from PATH; with neither, the worker ships unstripped, with a note saying so.
    """
    out = directory / binary.name
    objcopy = Path(shutil.which("swift") or "swift").resolve().with_name("llvm-objcopy")
    strip = shutil.which("strip")
    if objcopy.is_file():
        command = [str(objcopy), "--strip-all", str(binary), str(out)]
    elif strip:
        command = [strip, "-o", str(out), str(binary)]
    else:
        print(f"my_module: neither llvm-objcopy nor strip found: the wheel's worker keeps its symbols "
              f"({binary.stat().st_size:,} bytes)", file=sys.stderr, flush=True)
        return binary
    subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, check=True)
    return out


def platform_tag(binary: Path) -> str:
    """The wheel platform tag that ``binary`` meets.

    On glibc Linux, ``manylinux_X_Y_<arch>`` for the newest ``GLIBC_X.Y`` symbol version the
    binary needs (PEP 600): the oldest glibc it runs on, which ``auditwheel show`` checks in the
    wheel test. Elsewhere (macOS, musl) the running system's most specific tag (its OS version and
    architecture; not the Python build's deployment target, which the worker has nothing to do
    with).
    """
    if sys.platform.startswith("linux"):
        glibc = newest_glibc_needed(binary)
        arch = elf_machine(binary)
        if glibc is not None and arch is not None:
            return f"manylinux_{glibc[0]}_{glibc[1]}_{arch}"
    return next(iter(platform_tags()))


# --- ELF reading: just enough of the format to list the symbol versions an executable needs.

_SHT_GNU_VERNEED = 0x6FFFFFFE
_ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


def elf_machine(binary: Path) -> Optional[str]:
    with open(binary, "rb") as f:
        header = f.read(20)
    if not _is_elf64_le(header):
        return None
    return _ELF_MACHINES.get(struct.unpack_from("<H", header, 18)[0])


def newest_glibc_needed(binary: Path) -> Optional[Tuple[int, int]]:
    versions = [
        (int(m.group(1)), int(m.group(2)))
        for name in needed_symbol_versions(binary)
        for m in [re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", name)]
        if m
    ]
    return max(versions, default=None)


def needed_symbol_versions(binary: Path) -> Iterator[str]:
    """The version names in the executable's ``.gnu.version_r`` (``GLIBC_2.34``, ...)."""
    with open(binary, "rb") as f:
        header = f.read(64)
        if not _is_elf64_le(header):
            return
        shoff, = struct.unpack_from("<Q", header, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        # (type, offset, size, link, info) of each section header.
        sections: List[Tuple[int, int, int, int, int]] = []
        for i in range(shnum):
            _, kind, _, _, offset, size, link, info, _, _ = struct.unpack_from(
                "<IIQQQQIIQQ", table, i * shentsize
            )
            sections.append((kind, offset, size, link, info))
        for kind, offset, size, link, count in sections:
            if kind != _SHT_GNU_VERNEED:
                continue
            f.seek(offset)
            needs = f.read(size)
            f.seek(sections[link][1])
            strings = f.read(sections[link][2])
            entry = 0
            for _ in range(count):  # Elf64_Verneed entries, each with a list of Elf64_Vernaux
                _, aux_count, _, aux, next_entry = struct.unpack_from("<HHIII", needs, entry)
                at = entry + aux
                for _ in range(aux_count):
                    _, _, _, name, next_aux = struct.unpack_from("<IHHII", needs, at)
                    yield strings[name : strings.index(b"\0", name)].decode("ascii")
                    at += next_aux
                entry += next_entry


def _is_elf64_le(header: bytes) -> bool:
    return header[:4] == b"\x7fELF" and header[4] == 2 and header[5] == 1
