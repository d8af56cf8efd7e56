"""Start the longest test files first.

`make test` runs pytest-xdist with `--dist loadfile`: each file goes whole to one worker,
in the order pytest collected them. Collected alphabetically, the longest files (a
JupyterLab in Chromium running a quarter of the chapters, the student copies, the Binder
environment, the static site) would start late and leave the other workers idle at the
end; dealt out first, the many short files fill the gaps around them.
"""

from __future__ import annotations

from pathlib import Path

LONGEST_FIRST = ("test_browser_", "test_student_", "test_rerun_", "test_binder",
                 "test_site", "test_make_lab", "test_bare_suite", "test_conformance_battery")


def _rank(item) -> int:
    name = Path(str(item.fspath)).name
    for rank, prefix in enumerate(LONGEST_FIRST):
        if name.startswith(prefix):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_rank)         # a stable sort: the order within each file is kept
