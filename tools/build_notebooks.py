"""Build the course notebooks from their text sources and store real outputs.

Each chapter is written as a jupytext "percent" script in ``sources/`` (reviewable in a diff),
then executed top to bottom in a fresh kernel, from ``notebooks/`` as its working directory,
exactly as a learner would run it. The executed notebook is written to ``notebooks/``;
its outputs are what nbval later checks. Outputs are never edited by hand.

    python tools/build_notebooks.py                 # every chapter
    python tools/build_notebooks.py 02 03           # chapters whose file name starts so
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "sources"
NOTEBOOKS = ROOT / "notebooks"

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def notebook_from_source(source: Path) -> nbformat.NotebookNode:
    """Read a percent script into a notebook with no outputs and no jupytext pairing."""
    nb = jupytext.read(source)
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = KERNELSPEC
    for cell in nb.cells:
        cell.metadata.pop("lines_to_next_cell", None)
    return nb


def build(source: Path, timeout: int = 120) -> Path:
    nb = notebook_from_source(source)
    target = NOTEBOOKS / (source.stem + ".ipynb")
    # Export before executing too: a cell may start a subprocess (uvicorn, say) that
    # imports this very chapter's module from barelab/built.
    nbformat.write(nb, target)
    from barelab import export
    export.write()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    for cell in nb.cells:
        # ipykernel adds its own per-cell metadata on execution; keep notebooks diff-clean.
        cell.metadata.pop("execution", None)
    nbformat.write(nb, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="build only chapters starting with these")
    args = parser.parse_args(argv)
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if args.prefixes:
        sources = [s for s in sources if s.name.startswith(tuple(args.prefixes))]
    if not sources:
        print("no chapter sources matched", file=sys.stderr)
        return 1
    for source in sources:
        print(f"building {source.name} ...", flush=True)
        print(f"  wrote {build(source).relative_to(ROOT)}")
    # The notebooks just changed, so the modules they export may have too.
    from barelab import export
    for filename in export.write():
        print(f"  exported barelab/built/{filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
