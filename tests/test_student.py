"""`make student`: the workshop copies keep the exercises and checks, and lose the answers.

These test the transform of tools/make_student.py on small made-up notebooks, and that every
chapter converts. That each chapter's student copy really runs through "Run All" with every
check failing is tested in test_student_even.py / test_student_odd.py (one kernel per
chapter, split in two files so both test workers share them).
"""

from __future__ import annotations

import ast
import asyncio
import re
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from make_student import (BEGIN, END, StudentCopyError, bound_names,  # noqa: E402
                          student_notebook, stub_solution, write_student)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def solution(source: str):
    return new_code_cell(source, metadata={"tags": ["solution"]})


def check_cell(label: str):
    return new_code_cell(f'with check("{label}"):\n    assert answer() == 42',
                         metadata={"tags": ["check"]})


def executed(cell, text="42\n"):
    cell.execution_count = 7
    cell.outputs = [new_output("stream", name="stdout", text=text)]
    return cell


def run(source: str, namespace: dict | None = None) -> dict:
    namespace = {} if namespace is None else namespace
    exec(compile(source, "<stub>", "exec"), namespace)
    return namespace


# --- the stub of one region ----------------------------------------------------------------

def test_an_indented_region_becomes_a_raise_at_its_indentation():
    source = (f"def answer(x):\n    y = x + 1\n    {BEGIN}\n    z = y * 2\n    return z\n"
              f"    {END}\n\nprint('defined')")
    stub = stub_solution(source, "Exercise 2")
    assert stub == ("def answer(x):\n    y = x + 1\n    # your code here\n"
                    '    raise NotImplementedError("Exercise 2: write this part")\n\n'
                    "print('defined')")
    namespace = run(stub.replace("print('defined')", ""))
    with pytest.raises(NotImplementedError, match="^Exercise 2: write this part$"):
        namespace["answer"](1)


def test_a_deeper_region_keeps_its_own_indentation():
    source = (f"async def app(scope, receive, send):\n    if scope['type'] == 'http':\n"
              f"        {BEGIN}\n        await send({{}})\n        {END}\n    return None")
    stub = stub_solution(source, "Exercise 1")
    assert '        raise NotImplementedError("Exercise 1: write this part")' in stub.split("\n")
    ast.parse(stub)


def test_a_top_level_region_sets_each_name_it_binds_to_none():
    source = (f"setup = 1\n{BEGIN}\nimport json, os.path\nfrom math import tau as TAU\n"
              "LIMIT: int = 3\nfirst, *rest = [1, 2]\ncounter = 0\ncounter += 1\n"
              "@decorate\ndef helper():\n    inner = 2\n\nclass Thing:\n    attr = 1\n"
              "for item in []:\n    pass\nwith open('x') as handle:\n    pass\n"
              "if True:\n    flag = True\nobject().attr = 3\n"
              f"{END}\nsetup")
    stub = stub_solution(source, "Exercise 3")
    names = ["json", "os", "TAU", "LIMIT", "first", "rest", "counter", "helper", "Thing",
             "item", "handle", "flag"]
    assert stub == "\n".join(
        ["setup = 1"]
        + [f"{name} = None  # Exercise 3: replace None with your answer" for name in names]
        + ["setup"])
    assert run(stub)["Thing"] is None


def test_a_top_level_region_that_binds_nothing_becomes_pass():
    stub = stub_solution(f"{BEGIN}\nprint('hello')\nitems.append(1)\n{END}", "Exercise 4")
    assert stub == "pass  # Exercise 4: your code here"
    run(stub)


def test_bound_names_ignores_locals_of_functions_and_classes():
    assert bound_names("def f():\n    x = 1\nclass C:\n    y = 2\nz = [w for w in ()]") == \
        ["f", "C", "z"]


def test_a_region_in_a_class_body_becomes_an_init_that_raises():
    source = (f"class Middleware:\n    {BEGIN}\n    def __init__(self, app):\n"
              f"        self.app = app\n    {END}")
    stub = stub_solution(source, "Exercise 1")
    namespace = run(stub)  # defining the class must not raise
    with pytest.raises(NotImplementedError, match="Exercise 1: write this part"):
        namespace["Middleware"]("app")


def test_a_generator_stays_a_generator():
    source = (f"@asynccontextmanager\nasync def lifespan(app):\n    {BEGIN}\n"
              f"    yield {{'token': 1}}\n    {END}\n\n"
              f"def numbers():\n    {BEGIN}\n    yield from range(3)\n    {END}")
    stub = stub_solution(source, "Exercise 2")
    namespace = run(stub, {"asynccontextmanager": asynccontextmanager})

    async def enter():
        async with namespace["lifespan"](None):
            pass

    with pytest.raises(NotImplementedError):  # not TypeError: still an async generator
        asyncio.run(enter())
    with pytest.raises(NotImplementedError):
        next(namespace["numbers"]())


def test_a_function_that_already_yields_gets_no_extra_yield():
    source = f"def gen():\n    yield 0\n    {BEGIN}\n    yield 1\n    {END}"
    assert "never reached" not in stub_solution(source, "Exercise 1")


def test_several_regions_in_one_cell_and_ipython_syntax_around_them():
    source = (f"!echo hi\nvalue = await fetch()\n{BEGIN}\nx = 1\n{END}\n"
              f"def f():\n    {BEGIN}\n    return 2\n    {END}\n%time f")
    stub = stub_solution(source, "Exercise 5")
    assert BEGIN not in stub and END not in stub
    assert "x = None  # Exercise 5: replace None with your answer" in stub
    assert '    raise NotImplementedError("Exercise 5: write this part")' in stub
    assert stub.startswith("!echo hi\nvalue = await fetch()\n") and stub.endswith("%time f")


@pytest.mark.parametrize("source", [
    f"{BEGIN}\nx = 1", f"x = 1\n{END}", f"{END}\n{BEGIN}", f"{BEGIN}\n{BEGIN}\n{END}\n{END}",
    f"def f():\n    {BEGIN}\n    return 1\n{END}",
])
def test_broken_markers_are_refused(source):
    with pytest.raises(StudentCopyError):
        stub_solution(source, "Exercise 1")


# --- whole notebooks -----------------------------------------------------------------------

def small_notebook():
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nb.cells = [
        new_markdown_cell("# 99. A chapter\n\n## Exercises\n\n### Exercise 1 — first"),
        executed(solution(f"def answer():\n    {BEGIN}\n    return 42\n    {END}")),
        executed(check_cell("Exercise 1"), "✅ Exercise 1: all checks pass\n"),
        new_markdown_cell("Some words, then:\n\n### Exercise 2 — second"),
        executed(new_code_cell("prepared = 1")),
        executed(solution(f"{BEGIN}\nanswer2 = prepared + 41\n{END}\nanswer2")),
        executed(check_cell("Exercise 2"), "✅ Exercise 2: all checks pass\n"),
    ]
    return nb


def test_a_student_notebook_has_stubs_no_markers_and_no_outputs():
    original = small_notebook()
    student = student_notebook(original)
    assert original.cells[1].outputs, "the original notebook is left alone"
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert "SOLUTION" not in cell.source
    assert '"Exercise 1: write this part"' in student.cells[1].source
    assert student.cells[5].source == \
        "answer2 = None  # Exercise 2: replace None with your answer\nanswer2"
    for index in (0, 2, 3, 4, 6):  # everything else is kept as it was
        assert student.cells[index].source == original.cells[index].source
        assert student.cells[index].metadata == original.cells[index].metadata
    assert student.metadata == original.metadata


def test_a_solution_cell_needs_markers_and_an_exercise_heading():
    nb = small_notebook()
    nb.cells[1].source = "def answer():\n    return 42"
    with pytest.raises(StudentCopyError, match="answer would leak"):
        student_notebook(nb)
    nb = small_notebook()
    nb.cells[4].source = f"{BEGIN}\nprepared = 1\n{END}"  # markers, but no solution tag
    with pytest.raises(StudentCopyError, match="not tagged solution"):
        student_notebook(nb)
    nb = small_notebook()
    nb.cells[0].source = "# 99. A chapter"
    with pytest.raises(StudentCopyError, match="no '### Exercise N' heading"):
        student_notebook(nb)


def test_writing_is_idempotent_and_removes_stale_copies(tmp_path):
    notebooks, out = tmp_path / "notebooks", tmp_path / "student"
    notebooks.mkdir()
    for name in ("01_one", "02_two"):
        nbformat.write(small_notebook(), notebooks / f"{name}.ipynb")
    written, removed = write_student(out=out, notebooks=notebooks)
    assert [path.name for path in written] == ["01_one.ipynb", "02_two.ipynb"] and not removed
    first = (out / "01_one.ipynb").read_text()
    assert write_student(out=out, notebooks=notebooks) == ([], []), "nothing changed"
    assert (out / "01_one.ipynb").read_text() == first
    nbformat.validate(nbformat.read(out / "01_one.ipynb", as_version=4))

    (notebooks / "02_two.ipynb").unlink()
    (out / "notes.txt").write_text("a learner's own file")
    assert write_student(("01",), out=out, notebooks=notebooks) == ([], []), \
        "a run for some chapters removes nothing"
    written, removed = write_student(out=out, notebooks=notebooks)
    assert not written and [path.name for path in removed] == ["02_two.ipynb"]
    assert (out / "notes.txt").exists(), "only chapter notebooks are removed"


# --- the real chapters ---------------------------------------------------------------------

@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_chapter_converts_with_no_answer_left(notebook):
    original = nbformat.read(notebook, as_version=4)
    student = student_notebook(original)
    assert len(student.cells) == len(original.cells)
    headings = re.findall(r"^### Exercise (\d+)", "\n".join(
        c.source for c in original.cells if c.cell_type == "markdown"), flags=re.M)
    stubbed = set()
    for before, after in zip(original.cells, student.cells):
        if after.cell_type != "code":
            assert after == before
            continue
        assert after.outputs == [] and after.execution_count is None
        assert BEGIN not in after.source and END not in after.source
        if "solution" in after.metadata.get("tags", []):
            stubbed.update(re.findall(r"Exercise (\d+): (?:write this part|replace None|your "
                                      r"code here)", after.source))
        else:
            assert after.source == before.source
    assert stubbed == set(headings), "every exercise has a stub naming its number"


def test_a_known_failure_is_a_strict_xfail(monkeypatch):
    import student_runs

    monkeypatch.setitem(student_runs.EXPECTED_FAILURES, "01", "a reason")
    first = student_runs.notebooks_with_parity(1)[0]
    assert first.id.startswith("01_")
    [mark] = first.marks
    assert mark.name == "xfail" and mark.kwargs == {"strict": True, "reason": "a reason"}


def test_make_student_target_and_ignored_folder():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^student: \$\(STAMP\)\n\t\$\(BIN\)/python tools/make_student.py$",
                     makefile, flags=re.M)
    assert "student/" in (ROOT / ".gitignore").read_text().split()
