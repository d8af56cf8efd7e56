"""`make slides`: reveal.js slides of the first chapter of each part, built offline.

Each deck must have one top-level reveal.js section per `##` heading (plus the title),
show none of the exercises' solutions, and build without nbconvert logging a warning or
touching the network.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import make_slides  # noqa: E402

CHAPTERS = [path for number in make_slides.FIRST_OF_EACH_PART
            for path in sorted((ROOT / "notebooks").glob(f"{number}_*.ipynb"))[:1]]


class Deck(HTMLParser):
    """The slides' structure: top-level sections with their headings, and all the text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0                      # <section> nesting
        self.top: list[list[str]] = []      # per top-level section, its h1/h2 texts
        self.heading: list[str] | None = None
        self.in_script = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            if self.depth == 0:
                self.top.append([])
            self.depth += 1
        elif tag in ("h1", "h2") and self.depth:
            self.heading = []
        elif tag in ("script", "style"):
            self.in_script = True

    def handle_endtag(self, tag):
        if tag == "section":
            self.depth -= 1
        elif tag in ("h1", "h2") and self.heading is not None:
            self.top[-1].append("".join(self.heading).replace("¶", "").strip())
            self.heading = None
        elif tag in ("script", "style"):
            self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            return
        if self.heading is not None:
            self.heading.append(data)
        if self.depth:
            self.text.append(data)


def parse(html_text: str) -> Deck:
    deck = Deck()
    deck.feed(html_text)
    return deck


def headings(nb, level: str) -> list[str]:
    found, fence = [], False
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
            elif not fence and line.startswith(level + " "):
                found.append(line[len(level) + 1:].strip())
    return found


def solution_lines(nb) -> set[str]:
    """Lines only solution cells have (text also found elsewhere may well be shown)."""
    elsewhere = "\n".join(
        cell.source + "".join(str(output) for output in cell.get("outputs", []))
        for cell in nb.cells if "solution" not in cell.metadata.get("tags", []))
    return {line.strip() for cell in nb.cells if "solution" in cell.metadata.get("tags", [])
            for line in cell.source.splitlines()
            if len(line.strip()) > 12 and line.strip() not in elsewhere
            and "SOLUTION" not in line}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build every chosen chapter once, offline, recording what nbconvert logged."""
    out = tmp_path_factory.mktemp("slides")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(keep)
    real_connect = socket.socket.connect

    def no_network(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"the slides must build offline, but something connected to {address}")
        return real_connect(self, address)

    socket.socket.connect = no_network
    try:
        exporter = make_slides.exporter()
        exporter.log.addHandler(keep)  # traitlets' logger may not propagate to the root
        results = {path.stem: make_slides.build(path, out, exporter) for path in CHAPTERS}
        exporter.log.removeHandler(keep)
    finally:
        socket.socket.connect = real_connect
        root.removeHandler(keep)
    return results, records


def test_the_first_chapter_of_each_part_is_chosen():
    assert make_slides.FIRST_OF_EACH_PART == ("01", "04", "10", "17")
    assert CHAPTERS and CHAPTERS[0].name.startswith("01_")


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda path: path.stem[:2])
def test_one_slide_per_section_and_no_solutions(built, notebook):
    results, _ = built
    target, warnings = results[notebook.stem]
    assert target.exists() and target.stat().st_size > 0, f"{target} was not written"
    assert warnings == [], warnings
    nb = nbformat.read(notebook, as_version=4)
    html_text = target.read_text(encoding="utf-8")
    deck = parse(html_text)

    sections = headings(nb, "##")
    assert len(deck.top) == 1 + len(sections), \
        f"{len(deck.top)} slides for the title and {len(sections)} '##' headings"
    assert deck.top[0][:1] == [nb.cells[0].source.splitlines()[0].lstrip("# ").strip()], \
        "the first slide is the chapter title"
    for slide, heading in zip(deck.top[1:], sections):
        shown = re.sub(r"[`*]", "", heading)
        assert slide[:1] == [shown], f"a slide should start with '## {heading}', got {slide[:1]}"
    subsections = headings(nb, "###")
    assert html_text.count("<section") >= len(deck.top) + len(subsections), \
        "every '###' heading starts a sub-slide"

    text = "".join(deck.text)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    leaked = [line for line in solution_lines(nb) if line in text]
    assert not leaked, f"solution code is on the slides: {leaked[:3]}"
    assert "reveal.js" in html_text and 'class="reveal"' in html_text


def test_nbconvert_logged_no_warnings(built):
    _, records = built
    messages = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in records]
    assert messages == []


def test_make_slides_skips_a_missing_chapter(tmp_path, capsys):
    assert make_slides.main(["01", "99", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "skipping chapter 99" in printed
    assert (tmp_path / "index.html").exists()
    assert "01_frameworks_are_callables.slides.html" in (tmp_path / "index.html").read_text()


def test_the_notebooks_are_not_changed(built):
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        assert all("slideshow" not in cell.metadata for cell in nb.cells), \
            f"{path.name} got slideshow metadata written into it"
