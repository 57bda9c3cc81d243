"""The README and the docs as a user meets them: every Python block runs, every local link and
every ``docs/*.md`` the sources mention exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def local_links(path: Path) -> list[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8"))
    return [x for x in links if not re.match(r"[a-z]+:", x)]


def test_readme_has_python_blocks():
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text(encoding="utf-8")))))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    block = python_blocks(README.read_text(encoding="utf-8"))[index]
    monkeypatch.chdir(tmp_path)  # the blocks write medad-runs/ and files into the current folder
    exec(compile(block, f"README.md python block {index + 1}", "exec"), {"__name__": "__main__"})


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_local_links_resolve(doc):
    missing = []
    for link in local_links(doc):
        target, _, anchor = link.partition("#")
        file = (doc.parent / target).resolve() if target else doc
        if not file.exists():
            missing.append(link)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", file.read_text(encoding="utf-8"), flags=re.M)
            if anchor not in {slug(h) for h in headings}:
                missing.append(link)
    assert not missing, f"{doc.name}: dangling links {missing}"


def test_docs_the_sources_mention_exist():
    """`medad prepare --help` and friends point users at docs/*.md: those files must exist."""
    texts = [p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py")]
    named = {m for t in [*texts, README.read_text()] for m in re.findall(r"docs/[\w.-]+\.md", t)}
    assert named, "expected the sources to name at least one doc"
    assert not [n for n in sorted(named) if not (ROOT / n).is_file()]
    if any("PAPER.md" in t for t in texts):  # docstrings cite the study's facts by that name
        assert (ROOT / "docs" / "PAPER.md").is_file()
    assert (ROOT / "LICENSE").is_file() and "MIT" in (ROOT / "LICENSE").read_text()


def test_no_paths_outside_the_repository():
    for doc in DOCS:
        assert "../shared" not in doc.read_text(encoding="utf-8"), doc
