"""Build reveal.js slides from the first chapter of each part, for teaching live.

    python tools/make_slides.py                        # chapters 01, 04, 10, 17 -> build/slides/
    python tools/make_slides.py 02 --out /tmp/slides   # any chapters, anywhere

The slides come from the notebooks as stored in ``notebooks/``, outputs included. The
notebooks are never changed: each is read, copied, and the copy gets its slideshow metadata
on the fly before nbconvert's ``SlidesExporter`` renders it:

- a Markdown cell is first cut at its ``#``, ``##`` and ``###`` headings (outside code
  fences), so that each heading begins a cell of its own;
- the title (``#``) and every ``##`` heading start a new slide, every ``###`` heading a
  sub-slide (reveal.js stacks sub-slides vertically under their slide);
- other Markdown continues the slide it is on; each code cell is a fragment: the room
  reads the prose, and the next key press shows the code with its output;
- exercise solution cells (tagged ``solution``) are skipped, with their outputs.

Long slides scroll (``reveal_scroll``). reveal.js, RequireJS and MathJax are referenced
from their CDNs, which a teacher's browser reaches; nothing is fetched while building, so
the slides build offline. Open ``build/slides/index.html``.
"""

from __future__ import annotations

import argparse
import copy
import html
import logging
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
FIRST_OF_EACH_PART = ("01", "04", "10", "17")

HEADING = re.compile(r"^(#{1,3}) \S")
FENCE = re.compile(r"^\s*(```|~~~)")


def split_markdown(text: str) -> list[str]:
    """Cut Markdown before every #, ## or ### heading that is not inside a code fence."""
    pieces, current, in_fence = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and HEADING.match(line) and any(l.strip() for l in current):
            pieces.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
    if any(l.strip() for l in current):
        pieces.append("\n".join(current).strip("\n"))
    return pieces


def slide_type(cell) -> str:
    if "solution" in cell.get("metadata", {}).get("tags", []):
        return "skip"
    if cell.cell_type == "code":
        return "fragment"
    match = HEADING.match(cell.source)
    if match:
        return "subslide" if len(match.group(1)) == 3 else "slide"
    return "-"


def as_slides(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose cells carry reveal.js slideshow metadata."""
    deck = copy.deepcopy(nb)
    cells = []
    for cell in deck.cells:
        if cell.cell_type == "markdown":
            pieces = split_markdown(cell.source)
            for n, piece in enumerate(pieces):
                part = copy.deepcopy(cell)
                part.source = piece
                if n and "id" in part:
                    part.id = f"{cell.id}-{n}"
                cells.append(part)
        else:
            cells.append(cell)
    for cell in cells:
        cell.metadata["slideshow"] = {"slide_type": slide_type(cell)}
    deck.cells = cells
    return deck


class WarningRecorder(logging.Handler):
    """Keep every warning or error a logger emits while the exporter runs."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def exporter():
    from nbconvert import SlidesExporter

    slides = SlidesExporter()
    slides.reveal_scroll = True
    slides.reveal_transition = "none"
    slides.exclude_input_prompt = True
    slides.exclude_output_prompt = True
    return slides


def build(notebook: Path, out: Path, slides=None) -> tuple[Path, list[str]]:
    """Write ``out/<stem>.slides.html``; return its path and the warnings nbconvert logged."""
    slides = slides or exporter()
    recorder = WarningRecorder()
    logger = slides.log
    logger.addHandler(recorder)
    try:
        deck = as_slides(nbformat.read(notebook, as_version=4))
        body, _ = slides.from_notebook_node(deck, resources={"metadata": {"name": notebook.stem}})
    finally:
        logger.removeHandler(recorder)
    target = out / f"{notebook.stem}.slides.html"
    target.write_text(body, encoding="utf-8")
    return target, [f"{r.levelname}: {r.getMessage()}" for r in recorder.records]


def title_of(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return nb.cells[0].source.splitlines()[0].lstrip("# ").strip()


def write_index(out: Path, built: list[tuple[Path, str]]) -> Path:
    items = "\n".join(f'    <li><a href="{html.escape(path.name)}">{html.escape(title)}</a></li>'
                      for path, title in built)
    index = out / "index.html"
    index.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Back to Bare Metal: slides</title></head>
<body>
  <h1>Back to Bare Metal: slides</h1>
  <p>The first chapter of each part. Arrow keys move; <kbd>↓</kbd> opens a section's
  sub-slides, <kbd>Esc</kbd> shows the overview, <kbd>F</kbd> goes full screen.</p>
  <ul>
{items}
  </ul>
</body></html>
""", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", default=list(FIRST_OF_EACH_PART),
                        help="chapter numbers (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    slides, built, problems = exporter(), [], 0
    for number in args.chapters:
        matches = sorted(NOTEBOOKS.glob(f"{number}_*.ipynb"))
        if not matches:
            print(f"skipping chapter {number}: no notebooks/{number}_*.ipynb yet")
            continue
        target, warnings = build(matches[0], args.out, slides)
        for warning in warnings:
            print(f"  {matches[0].name}: {warning}", file=sys.stderr)
        problems += len(warnings)
        built.append((target, title_of(matches[0])))
        print(f"wrote {target}")
    if built:
        print(f"wrote {write_index(args.out, built)}")
    return 1 if problems or not built else 0


if __name__ == "__main__":
    sys.exit(main())
