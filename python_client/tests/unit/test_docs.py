"""The docs: README.md stays a front door (at most 10 KB) that links every page of docs/, and every
relative link in the repository's Markdown resolves, to a file and, with a ``#fragment``, to a heading."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import pytest


def repository_root() -> Path:
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "Package.swift").is_file())


ROOT = repository_root()
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
DOC_PAGES = ["performance.md", "reliability.md", "scaling-out.md", "design.md"]


def markdown_files() -> List[Path]:
    """Every .md file of the repository, outside hidden and build folders."""
    return sorted(p for p in ROOT.rglob("*.md")
                  if not any(part.startswith(".") or part == "node_modules" for part in p.relative_to(ROOT).parts))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def relative_links(path: Path) -> Iterator[Tuple[str, str]]:
    """(link, where) for each link of ``path`` that is not a URL, outside code."""
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    for match in LINK.finditer(text):
        target = match.group(1)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            yield target, f"{os.path.relpath(path, ROOT)}: ({target})"


def test_the_link_reader_reads_links_and_headings(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A `b`, c!\n[x](y.md#z) ![i](img.png) [u](https://e.org) `[no](code.md)`\n"
                    "```\n[no](fenced.md)\n```\n")
    assert [link for link, _ in relative_links(page)] == ["y.md#z", "img.png"]
    assert anchors(page) == {"a-b-c"}


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for link, where in relative_links(page):
        file_part, _, fragment = link.partition("#")
        target = (page.parent / file_part).resolve() if file_part else page
        if not target.exists():
            broken.append(f"{where}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{where}: no heading #{fragment} in {target.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_the_readme_is_a_front_door() -> None:
    readme = ROOT / "README.md"
    assert readme.stat().st_size <= 10_000, f"README.md is {readme.stat().st_size:,} bytes; move detail to docs/"
    links = {link for link, _ in relative_links(readme)}
    for page in DOC_PAGES:
        assert (ROOT / "docs" / page).is_file(), f"docs/{page} is missing"
        assert f"docs/{page}" in links, f"README.md does not link docs/{page}"
    assert {"CONTRIBUTING.md", "python_client/README.md", "protocol/SPEC.md"} <= links
