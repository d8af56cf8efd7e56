"""The chapters as files: in step with their sources, shaped like a chapter, re-runnable.

nbval (run by the same `make test`) checks that each notebook's stored outputs are what its
code produces. These tests check what nbval does not: the notebook is the one its source
describes and it has the parts every chapter promises. (That it survives "Run All" twice in
one kernel is checked in test_rerun_*.py, split in two files so both test workers share it.)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from build_notebooks import notebook_from_source  # noqa: E402

SOURCES = sorted((ROOT / "sources").glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def chapter_id(path: Path) -> str:
    return path.stem


def comparable(cell) -> tuple:
    tags = tuple(cell.get("metadata", {}).get("tags", []))
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    return cell["cell_type"], source.strip(), tags


def test_every_source_has_its_notebook_and_no_notebook_is_orphaned():
    assert SOURCES, "no chapter sources found"
    assert [s.stem for s in SOURCES] == [n.stem for n in NOTEBOOKS]


@pytest.mark.parametrize("source", SOURCES, ids=chapter_id)
def test_notebook_matches_its_source(source):
    built = notebook_from_source(source)
    stored = nbformat.read(ROOT / "notebooks" / (source.stem + ".ipynb"), as_version=4)
    assert [comparable(c) for c in stored.cells] == [comparable(c) for c in built.cells], (
        f"notebooks/{source.stem}.ipynb is out of date: run "
        f"`python tools/build_notebooks.py {source.stem[:2]}`")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=chapter_id)
def test_notebook_has_the_parts_of_a_chapter(notebook):
    nb = json.loads(notebook.read_text())
    cells = nb["cells"]
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    number = notebook.name[:2]
    assert re.match(rf"# {int(number):02d}\. \S", "".join(cells[0]["source"])), \
        "the first cell is the title '# NN. Title'"
    for heading in ("## Learning goals", "## Summary", "## Exercises"):
        assert heading in markdown, f"missing {heading!r}"
    exercises = re.findall(r"^### Exercise (\d+)", markdown, flags=re.M)
    assert len(exercises) >= 3, "at least three exercises"
    tags = [c.get("metadata", {}).get("tags", []) for c in cells]
    solutions = [i for i, t in enumerate(tags) if "solution" in t]
    checks = [i for i, t in enumerate(tags) if "check" in t]
    assert len(checks) >= len(exercises) and len(solutions) >= len(exercises)
    for i in solutions:
        text = "".join(cells[i]["source"])
        assert "### BEGIN SOLUTION" in text and "### END SOLUTION" in text
    for i in checks:
        text = "".join(cells[i]["source"])
        assert "check(" in text
        printed = "".join("".join(o.get("text", "")) for o in cells[i].get("outputs", []))
        assert "✅" in printed and "❌" not in printed, f"check cell {i} does not pass"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=chapter_id)
def test_stored_outputs_are_complete_and_error_free(notebook):
    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"cell {index} was never executed"
        for output in cell.outputs:
            assert output.output_type != "error", f"cell {index} stored an error"
            assert output.get("name") != "stderr" or "Warning" not in output.get("text", ""), \
                f"cell {index} stored a warning"
