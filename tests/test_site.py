"""`make site`: a static HTML site of the course, from the stored notebooks, without warnings.

Builds into a temporary folder: one page per chapter with its stored outputs, a front page
that links every chapter, and navigation between neighbours, with no broken local links and
nothing logged or warned by nbconvert.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    problems = build_site.build(out)
    return out, problems


def test_the_site_builds_without_warnings_or_broken_links(site):
    out, problems = site
    assert problems == []


def test_the_front_page_links_every_chapter_in_order(site):
    out, _ = site
    front = (out / "index.html").read_text(encoding="utf-8")
    linked = re.findall(r'<a href="(\d\d_[a-z0-9_]+\.html)">', front)
    assert linked == [f"{nb.stem}.html" for nb in NOTEBOOKS]


class Text(HTMLParser):
    """The text a reader sees, with runs of white space made single spaces."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self.hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)

    @classmethod
    def of(cls, markup: str) -> str:
        parser = cls()
        parser.feed(markup)
        return " ".join("".join(parser.parts).split())


ANSI = re.compile(r"\x1b\[[0-9;]*m")      # colours in `!curl -i` output, which the page draws


def output_text(output) -> str:
    """The text of an output as the page shows it ('' for Markdown, which it re-renders)."""
    if output.output_type == "stream":
        return " ".join(ANSI.sub("", output.text).split())
    data = output.get("data", {})
    if "text/html" in data:
        return Text.of(data["text/html"])
    if "text/markdown" in data:
        return ""
    return " ".join(ANSI.sub("", data.get("text/plain", "")).split())


def stored_outputs(notebook: Path, count: int = 5) -> list[str]:
    """The first ``count`` outputs of a chapter with text, each cut to 60 characters."""
    nb = nbformat.read(notebook, as_version=4)
    texts = [output_text(output)[:60] for cell in nb.cells
             for output in cell.get("outputs", [])]
    return [text for text in texts if len(text) >= 8][:count]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_each_page_shows_its_stored_outputs_and_links_its_neighbours(site, notebook):
    out, _ = site
    page = (out / f"{notebook.stem}.html").read_text(encoding="utf-8")
    title = nbformat.read(notebook, as_version=4).cells[0].source.splitlines()[0]
    text = Text.of(page)
    assert title.lstrip("# ").replace("`", "") in text
    outputs = stored_outputs(notebook)
    assert len(outputs) == 5
    for output in outputs:
        assert output in text, "a stored output is missing from the page"
    index = NOTEBOOKS.index(notebook)
    nav = page.split('<nav class="course-nav">', 1)[1].split("</nav>", 1)[0]
    assert 'href="index.html"' in nav
    for neighbour in (index - 1, index + 1):
        if 0 <= neighbour < len(NOTEBOOKS):
            assert f'href="{NOTEBOOKS[neighbour].stem}.html"' in nav
