"""Build a static web site of the course from the notebooks as stored, outputs included.

    python tools/build_site.py                  # -> build/site/index.html
    python tools/build_site.py --out /tmp/site

Each chapter becomes one page, rendered by nbconvert's HTML exporter with JupyterLab's
look; the notebooks are read, never run nor changed, so the pages show exactly the stored
outputs the tests check. The front page is the README's introduction and chapter list, with
each chapter linked to its page. Every page gets a bar with the contents and the previous
and next chapters. Images the README shows (docs/img/) are copied beside it.

The build fails (exit status 1) if nbconvert logs a warning, Python warns, a chapter in the
README has no notebook, or a page links to a file that does not exist. Mermaid diagrams
render in the reader's browser with mermaid.js from its CDN; nothing is fetched while
building, so the site builds offline.
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import shutil
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_slides import WarningRecorder, title_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TITLE = "Back to Bare Metal — WSGI & ASGI for Python developers"

STYLE = """
.course-nav { position: sticky; top: 0; z-index: 10; display: flex; gap: 1.5em;
  justify-content: space-between; padding: .6em 1.2em; background: #f6f8fa;
  border-bottom: 1px solid #d0d7de; font: 14px/1.4 system-ui, sans-serif; }
.course-nav a { color: #0969da; text-decoration: none; }
.course-nav a:hover { text-decoration: underline; }
"""

FRONT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ max-width: 52em; margin: 2em auto; padding: 0 1em;
  font: 16px/1.55 system-ui, sans-serif; color: #1f2328; }}
a {{ color: #0969da; }} code {{ background: #f6f8fa; padding: .1em .3em; }}
pre {{ background: #f6f8fa; padding: .8em; overflow-x: auto; }}
img {{ max-width: 100%; border: 1px solid #d0d7de; }}
</style></head>
<body>
{body}
</body></html>
"""


def chapters() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def page_name(notebook: Path) -> str:
    return f"{notebook.stem}.html"


def nav_bar(index: int, pages: list[tuple[str, str]]) -> str:
    """Contents, previous and next chapter, as links between pages."""
    def link(i: int, arrow: str) -> str:
        if not 0 <= i < len(pages):
            return "<span></span>"
        name, title = pages[i]
        text = f"{arrow} {title}" if arrow == "←" else f"{title} {arrow}"
        return f'<a href="{html.escape(name)}">{html.escape(text)}</a>'
    return (f'<nav class="course-nav">{link(index - 1, "←")}'
            f'<a href="index.html">Contents</a>{link(index + 1, "→")}</nav>')


def chapter_page(exporter, notebook: Path, nav: str) -> str:
    nb = nbformat.read(notebook, as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    body = body.replace("</head>", f"<style>{STYLE}</style>\n</head>", 1)
    # The bar goes right after <body ...>, above the first cell.
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, body, count=1)


def front_page(readme: str, pages: dict[str, str]) -> str:
    """The README from its title to the chapter list, each chapter linked to its page.

    The two commands and the Binder badge stay: a reader of the site runs the course from
    a clone or on Binder, and the page says how.
    """
    import mistune

    intro = readme.split("## The helper package", 1)[0]

    def link_chapter(match: re.Match) -> str:
        number, title = match.group(1), match.group(2)
        if number not in pages:
            raise SystemExit(f"README lists chapter {number}, which has no notebook")
        return f"- **[{number} {title}]({pages[number]})**"

    intro = re.sub(r"^- \*\*(\d\d) (.+?)\*\*", link_chapter, intro, flags=re.M)
    return FRONT.format(title=html.escape(TITLE), body=mistune.html(intro))


class Links(HTMLParser):
    """Every href and src of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)


def broken_links(out: Path) -> list[str]:
    """Links between the site's own files whose target is missing."""
    broken = []
    for page in sorted(out.glob("*.html")):
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for target in parser.targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:|^//|^#", target):
                continue                         # another site, a data: URL, an anchor
            if not (out / target.split("#")[0]).exists():
                broken.append(f"{page.name} → {target}")
    return broken


def build(out: Path) -> list[str]:
    """Write the site into ``out``; return the problems found (empty when all is well)."""
    from nbconvert import HTMLExporter

    out.mkdir(parents=True, exist_ok=True)
    notebooks = chapters()
    pages = [(page_name(nb), title_of(nb)) for nb in notebooks]
    exporter = HTMLExporter(template_name="lab")
    recorder = WarningRecorder()
    logging.getLogger().addHandler(recorder)
    exporter.log.addHandler(recorder)
    problems: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for index, notebook in enumerate(notebooks):
                page = chapter_page(exporter, notebook, nav_bar(index, pages))
                (out / page_name(notebook)).write_text(page, encoding="utf-8")
            numbered = {nb.name[:2]: page_name(nb) for nb in notebooks}
            readme = (ROOT / "README.md").read_text(encoding="utf-8")
            (out / "index.html").write_text(front_page(readme, numbered), encoding="utf-8")
        problems += [f"{w.category.__name__}: {w.message}" for w in caught]
    finally:
        logging.getLogger().removeHandler(recorder)
        exporter.log.removeHandler(recorder)
    problems += [f"{r.levelname}: {r.getMessage()}" for r in recorder.records]
    images = ROOT / "docs" / "img"
    if images.is_dir():
        shutil.copytree(images, out / "docs" / "img", dirs_exist_ok=True)
    problems += [f"broken link: {link}" for link in broken_links(out)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    args = parser.parse_args(argv)
    problems = build(args.out)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"wrote {len(chapters())} chapters and {args.out / 'index.html'}"
          + (f"; {len(problems)} problems" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
