"""Run a chapter's student copy as a learner does at a workshop: "Run All", unsolved.

Shared by test_student_even.py and test_student_odd.py: pytest-xdist (`--dist loadfile`)
gives each test file to one worker, so the chapters are split over two files by the parity
of their number to keep both workers busy (as test_rerun_*.py do).

A student copy (tools/make_student.py) must run top to bottom in a fresh kernel with no cell
raising, every check cell must print ❌ (the checks fail until solved) and none ✅, and no
server may be left running at the end.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from make_student import exercise_labels, student_notebook  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Chapters (by number) whose student copy is known not to run clean, with what to change.
# Each is a strict xfail: once the chapter is fixed the test fails, so remove its entry.
EXPECTED_FAILURES: dict[str, str] = {}


def notebooks_with_parity(parity: int) -> list:
    """pytest params for the chapters with that parity, known failures marked strict xfail."""
    params = []
    for path in NOTEBOOKS:
        if int(path.name[:2]) % 2 != parity:
            continue
        reason = EXPECTED_FAILURES.get(path.name[:2])
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(path, marks=marks, id=path.stem))
    return params


def _text(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def _printed(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _places(nb) -> list[str]:
    """For each cell, where it is: the exercise it belongs to, else its section heading."""
    places, section = [], "the introduction"
    for cell, label in zip(nb.cells, exercise_labels(nb)):
        if cell.cell_type == "markdown":
            heading = re.search(r"^##\s+(?!#)(.+)$", _text(cell), flags=re.M)
            if heading:
                section = f"section {heading.group(1).strip()!r}"
        in_exercises = label is not None and section == "section 'Exercises'"
        places.append(label if in_exercises else section)
    return places


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_summary(error: Exception) -> str:
    lines = [line for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    # The traceback ends with the exception line ("NameError: name 'x' is ..."), perhaps
    # followed by notes; nbclient adds the exception's type name as a line of its own.
    named = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Exit|Interrupt)\b", line)]
    return named[-1] if named else lines[-1] if lines else type(error).__name__


def run_student_copy(notebook: Path, workdir: Path) -> list[str]:
    """Run the student copy of `notebook` from `workdir`; return what went wrong (if anything)."""
    chapter = notebook.stem
    nb = student_notebook(nbformat.read(notebook, as_version=4))
    nbformat.write(nb, workdir / notebook.name)  # where a learner has it: cwd is its folder
    places = _places(nb)
    problems: list[str] = []
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    probe = nbformat.v4.new_code_cell(
        "import barelab\nprint('running:', [server.name for server in barelab.running()])")
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as error:
                problems.append(f"{chapter}, cell {index} ({places[index]}) raised "
                                f"{_error_summary(error)}")
            except CellTimeoutError:
                problems.append(f"{chapter}, cell {index} ({places[index]}) timed out")
                break
            if "check" in cell.get("metadata", {}).get("tags", []):
                printed = _printed(cell)
                if "✅" in printed:
                    problems.append(f"{chapter}, {places[index]}: the check passes unsolved "
                                    f"(cell {index} printed {printed.strip()!r})")
                elif "❌" not in printed:
                    problems.append(f"{chapter}, {places[index]}: the check cell {index} "
                                    f"printed no ❌ (printed {printed.strip()!r})")
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
    left = _printed(probe).strip()
    if left != "running: []":
        problems.append(f"{chapter}: servers still running after the last cell: {left}")
    return problems
