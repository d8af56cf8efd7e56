"""Run a notebook's cells twice in one kernel, as a learner pressing "Run All" twice does.

Shared by test_rerun_even.py and test_rerun_odd.py: pytest-xdist (`--dist loadfile`)
gives each test file to one worker, so the chapters are split over two files by the parity
of their number to keep both workers busy.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def notebooks_with_parity(parity: int) -> list[Path]:
    return [path for path in NOTEBOOKS if int(path.name[:2]) % 2 == parity]


def run_all_twice_then_check_nothing_runs(notebook: Path) -> None:
    """Execute every cell twice in one kernel (errors raise), then check no server is left."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    probe = nbformat.v4.new_code_cell(
        "import barelab\nassert not barelab.running(), barelab.running()\nprint('clean')")
    with client.setup_kernel():
        for _ in range(2):
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)  # raises CellExecutionError on an error
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
    assert probe.outputs[0]["text"].strip() == "clean"
