"""The student copies run unsolved, for the chapters with an even number (see student_runs.py)."""

import pytest

from student_runs import notebooks_with_parity, run_student_copy


@pytest.mark.parametrize("notebook", notebooks_with_parity(0))
def test_student_copy_runs_all_with_every_check_failing_and_no_server_left(notebook, tmp_path):
    problems = run_student_copy(notebook, tmp_path)
    assert not problems, "the student copy of " + notebook.stem + " does not run clean:\n  " + \
        "\n  ".join(problems)
