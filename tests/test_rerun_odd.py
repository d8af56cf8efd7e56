"""Run All twice in one kernel, for the chapters with an odd number (see rerun.py)."""

import pytest

from rerun import notebooks_with_parity, run_all_twice_then_check_nothing_runs


@pytest.mark.parametrize("notebook", notebooks_with_parity(1), ids=lambda path: path.stem)
def test_run_all_twice_in_one_kernel_then_nothing_is_left_running(notebook):
    run_all_twice_then_check_nothing_runs(notebook)
