"""The package's shape: imports point one way (no cycle, ``TYPE_CHECKING`` imports included),
method knowledge sits in the method table, every tunable is a keyword-only ``Worker(...)``
option, and the test hooks live in the tests, not on the production class."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Dict, Set

import pytest

import my_module
from my_module import _methods, _session

PACKAGE = Path(my_module.__file__).resolve().parent

LAYERS = [
    "_protocol", "_errors", "_locate", "_jsonrpc", "_framing", "_convert", "_shm", "_methods",
    "_process", "_connection", "_requests", "_session", "_worker", "_default", "__init__", "__main__",
]
"""Bottom to top: a module may import only modules before it."""


def imports_of(path: Path) -> Set[str]:
    """Every ``my_module`` module ``path`` imports, anywhere in it (TYPE_CHECKING blocks too)."""
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("my_module."):
            found.add(node.module.split(".")[1])
    return found


LINE_BUDGET = 1800 + 53
"""The package holds at most this many non-blank, non-comment lines (docstrings count): 1,800 with every feature
(issues 9 and 20), plus the 53 that out= added (issue 22 allows up to 60)."""


def code_lines(path: Path) -> int:
    """Lines whose text is neither blank nor a comment (docstrings count)."""
    return sum(1 for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#"))


def test_code_lines_count_what_they_say(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Doc."""\n\n# a comment\n    # indented comment\nx = 1  # trailing\n\n')
    assert code_lines(sample) == 2


def test_the_package_stays_within_its_line_budget() -> None:
    counts = {p.name: code_lines(p) for p in sorted(PACKAGE.glob("*.py"))}
    total = sum(counts.values())
    assert total <= LINE_BUDGET, f"{total} lines, over the budget of {LINE_BUDGET}: {counts}"


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == set(LAYERS), f"modules without a layer: {modules ^ set(LAYERS)}"


def test_imports_point_down_the_layers_only() -> None:
    graph: Dict[str, Set[str]] = {m: imports_of(PACKAGE / f"{m}.py") for m in LAYERS}
    for module, imported in graph.items():
        above = {m for m in imported if LAYERS.index(m) >= LAYERS.index(module)}
        assert not above, f"{module} imports {sorted(above)}, which are not below it"


def test_connection_and_framing_know_no_method_but_the_lifecycle_ones() -> None:
    # The transport knows request ids; what a calculate_squares reply means is _methods'.
    for module in ("_connection", "_framing", "_jsonrpc"):
        text = (PACKAGE / f"{module}.py").read_text()
        assert "squaresPacked" not in text and "numbersPacked" not in text, module
        assert "CALCULATE_SQUARES" not in text, module


def test_a_method_is_one_table_entry(worker_command) -> None:
    # A new per-element method would be an ArrayMethod entry; a plain one an RpcMethod.
    # calculate_squares through its entry alone, with chunks of 3: chunked, joined, exact.
    from my_module import _requests

    with my_module.Worker(worker_command, chunk_size=3) as w:
        call = w._session.call(_methods.CALCULATE_SQUARES, list(range(10)), 20)
        assert _requests.run(call) == [n * n for n in range(10)]
        assert call.bounds == [(0, 3), (3, 6), (6, 9), (9, 10)]
    entry = _methods.CALCULATE_SQUARES
    assert entry.name == "calculate_squares" and {e.name for e in entry.encodings} == {"shm", "packed", "json"}


def test_every_tunable_is_a_keyword_only_option_with_a_documented_default() -> None:
    parameters = inspect.signature(my_module.Worker).parameters
    fields = {f.name: f.default for f in _session.Options.__dataclass_fields__.values()}
    for name, default in fields.items():
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        if name != "max_frame_bytes":  # None there means the protocol's default
            assert parameters[name].default == default, name
        assert f":param {name}:" in (my_module.Worker.__doc__ or ""), f"{name} is not documented"


@pytest.mark.parametrize("options", [
    {"timeout": -1}, {"startup_timeout": float("nan")}, {"retries": -1}, {"chunk_size": 0},
    {"encodings": ("zip",)}, {"encodings": ()}, {"max_frame_bytes": 100},
])
def test_options_out_of_range_are_refused(worker_command, options) -> None:
    with pytest.raises(ValueError):
        my_module.Worker(worker_command, **options)


def test_options_are_fixed_at_construction(worker_command) -> None:
    with my_module.Worker(worker_command, chunk_size=7, retries=0) as w:
        assert w.options.chunk_size == 7 and w.options.retries == 0
        with pytest.raises(AttributeError):
            w.options.chunk_size = 8  # type: ignore[misc]


def test_no_test_hooks_on_the_worker() -> None:
    names = set(dir(my_module.Worker))
    assert not names & {"_request", "_submit_request", "_in_flight"}, names
