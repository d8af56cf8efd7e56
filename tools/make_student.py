"""Write the workshop copies of the notebooks: exercises without their answers.

For every ``notebooks/NN_slug.ipynb`` this writes ``student/NN_slug.ipynb``, a fresh notebook
for the learner:

- in every cell tagged ``solution``, the lines between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` are replaced by a stub, and the two marker lines (they are for
  authors) are left out;
- every output and execution count is cleared, so the learner starts from an unrun notebook
  (the author's notebooks keep their stored outputs; these copies have none);
- everything else (Markdown, the other code cells, the ``check`` cells, tags, metadata) is
  kept as it is.

The stub depends on where the markers sit, and says which exercise it belongs to (the
number of the nearest ``### Exercise N`` heading above the cell):

- Inside a function body (indented markers): the region becomes ``# your code here`` and
  ``raise NotImplementedError("Exercise N: write this part")`` at the markers' indentation,
  so calling the function raises and the check cell says "not solved yet". If the answer
  made the function a generator (a ``yield`` in the region) and nothing else in it yields, a
  never-reached ``yield`` follows, so the function stays a generator as callers expect
  (``@asynccontextmanager``, a yield fixture, ``async for``).
- Inside a class body: the region becomes an ``__init__`` that raises the same
  ``NotImplementedError`` (a bare ``raise`` there would stop the cell that defines the class).
- At the top level (or in a top-level ``if``/``with`` block): every name the region binds
  (assignments, ``def``, ``class``, ``import``; found with ``ast``) becomes
  ``name = None  # Exercise N: replace None with your answer``; a region that binds no name
  becomes ``pass  # Exercise N: your code here``.

The check cells are kept, so in a student copy they print ❌ until the exercise is solved
(``barelab.exercises.check`` never raises), and "Run All" still reaches the last cell.
No data files are copied: the chapters create every file they use (in temporary folders).

Running it again rewrites only copies whose content changed, and removes ``student/NN_*.ipynb``
files whose notebook no longer exists. ``student/`` is generated (and ignored by git): a
learner who wants to keep their answers works on a copy of it, since ``make student``
overwrites it.

    python tools/make_student.py               # every chapter, stale copies removed
    python tools/make_student.py 02 03         # chapters whose file name starts so
    python tools/make_student.py --out DIR     # somewhere else than student/
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
STUDENT = ROOT / "student"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"
_HEADING = re.compile(r"^#{3}\s+Exercise\s+(\d+)\b", re.MULTILINE)
_PLACEHOLDER = "__student_stub_placeholder__"
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


class StudentCopyError(ValueError):
    """A notebook whose solution cells cannot be turned into a student copy safely."""


# --- what a region binds, and where it sits ---------------------------------------------

def _parse(text: str) -> ast.Module:
    """Parse cell code the way IPython runs it (magics, ``!cmd``, top-level ``await``)."""
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(text)
    return compile(python, "<cell>", "exec",
                   flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def bound_names(code: str) -> list[str]:
    """The names that ``code`` binds in its own (top-level) namespace, in order of binding.

    Counts assignments (also augmented, annotated with a value, unpacking), ``def``,
    ``class``, ``import``, and ``for`` / ``with ... as`` targets, looking inside top-level
    ``if`` / ``for`` / ``while`` / ``with`` / ``try`` / ``match`` blocks but not inside
    functions or classes (their locals are not the notebook's names).
    """
    names: list[str] = []

    def add(name: str) -> None:
        if name not in names:
            names.append(name)

    def targets(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                targets(element)
        elif isinstance(node, ast.Starred):
            targets(node.value)
        # attributes and subscripts change an object: they bind no name

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                add(statement.name)
            elif isinstance(statement, ast.Assign):
                for target in statement.targets:
                    targets(target)
            elif isinstance(statement, ast.AugAssign):
                targets(statement.target)
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                targets(statement.target)
            elif isinstance(statement, (ast.Import, ast.ImportFrom)):
                for alias in statement.names:
                    if alias.name != "*":
                        add(alias.asname or alias.name.split(".")[0])
            elif isinstance(statement, (ast.For, ast.AsyncFor)):
                targets(statement.target)
                visit(statement.body)
                visit(statement.orelse)
            elif isinstance(statement, (ast.While, ast.If)):
                visit(statement.body)
                visit(statement.orelse)
            elif isinstance(statement, (ast.With, ast.AsyncWith)):
                for item in statement.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars)
                visit(statement.body)
            elif isinstance(statement, ast.Try) or type(statement).__name__ == "TryStar":
                visit(statement.body)
                for handler in statement.handlers:
                    visit(handler.body)
                visit(statement.orelse)
                visit(statement.finalbody)
            elif isinstance(statement, ast.Match):
                for case in statement.cases:
                    visit(case.body)

    visit(_parse(code).body)
    return names


def _own_yield(nodes: list[ast.AST]) -> bool:
    """Whether these statements yield for their own function (not for a nested one)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(node, _SCOPES):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


def _enclosing_scope(tree: ast.Module) -> ast.AST | None:
    """The innermost function or class around the placeholder line (None: top level)."""
    def search(node: ast.AST, scope: ast.AST | None) -> tuple[bool, ast.AST | None]:
        if isinstance(node, ast.Name) and node.id == _PLACEHOLDER:
            return True, scope
        inner = node if isinstance(node, _SCOPES) else scope
        for child in ast.iter_child_nodes(node):
            found, where = search(child, inner)
            if found:
                return True, where
        return False, None

    return search(tree, None)[1]


# --- the stub ----------------------------------------------------------------------------

def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _stub(lines: list[str], begin: int, end: int, label: str) -> list[str]:
    """The lines that replace lines[begin..end] (the markers included)."""
    indent = _indent(lines[begin])
    region = "\n".join(lines[begin + 1:end])
    probe = "\n".join(lines[:begin] + [indent + _PLACEHOLDER] + lines[end + 1:])
    try:
        scope = _enclosing_scope(_parse(probe))
        region_tree = _parse(textwrap.dedent(region)) if region.strip() else ast.Module([], [])
    except SyntaxError as error:
        raise StudentCopyError(f"{label}: the solution cell does not parse ({error})") from error

    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        stub = [f"{indent}# your code here",
                f'{indent}raise NotImplementedError("{label}: write this part")']
        if _own_yield(region_tree.body) and not _own_yield(scope.body):
            stub.append(f"{indent}yield  # never reached: keeps {scope.name} a generator")
        return stub
    if isinstance(scope, ast.ClassDef):
        return [f"{indent}# your code here",
                f"{indent}def __init__(self, *args, **kwargs):",
                f'{indent}    raise NotImplementedError("{label}: write this part")']
    if isinstance(scope, ast.Lambda):
        raise StudentCopyError(f"{label}: solution markers cannot sit inside a lambda")
    names = bound_names(textwrap.dedent(region)) if region.strip() else []
    if not names:
        return [f"{indent}pass  # {label}: your code here"]
    return [f"{indent}{name} = None  # {label}: replace None with your answer" for name in names]


def stub_solution(source: str, label: str) -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's code with its stub."""
    lines = source.split("\n")
    while True:
        begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
        ends = [i for i, line in enumerate(lines) if line.strip() == END]
        if not begins and not ends:
            return "\n".join(lines)
        if not begins or not ends or ends[0] < begins[0] or (
                len(begins) > 1 and begins[1] < ends[0]):
            raise StudentCopyError(f"{label}: unmatched {BEGIN!r} / {END!r} lines")
        begin, end = begins[0], ends[0]
        if _indent(lines[begin]) != _indent(lines[end]):
            raise StudentCopyError(f"{label}: {BEGIN!r} and {END!r} are indented differently")
        lines[begin:end + 1] = _stub(lines, begin, end, label)


# --- notebooks ---------------------------------------------------------------------------

def _text(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def exercise_labels(nb) -> list[str | None]:
    """For each cell, "Exercise N" from the nearest "### Exercise N" heading above it."""
    labels, current = [], None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = _HEADING.findall(_text(cell))
            if found:
                current = f"Exercise {found[-1]}"
        labels.append(current)
    return labels


def is_solution(cell) -> bool:
    return cell.cell_type == "code" and "solution" in cell.get("metadata", {}).get("tags", [])


def student_notebook(nb):
    """A copy of ``nb`` with the answers stubbed and every output cleared."""
    nb = copy.deepcopy(nb)
    for index, (cell, label) in enumerate(zip(nb.cells, exercise_labels(nb))):
        if cell.cell_type != "code":
            continue
        text = _text(cell)
        has_markers = any(line.strip() in (BEGIN, END) for line in text.split("\n"))
        if is_solution(cell):
            if not has_markers:
                raise StudentCopyError(f"cell {index} is tagged solution but has no "
                                       f"{BEGIN!r} / {END!r} lines: its answer would leak")
            if label is None:
                raise StudentCopyError(f"solution cell {index} has no '### Exercise N' "
                                       "heading above it")
            cell.source = stub_solution(text, label)
        elif has_markers:
            raise StudentCopyError(f"cell {index} has solution markers but is not tagged "
                                   "solution: its answer would leak")
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
    return nb


def write_student(prefixes: tuple[str, ...] = (), out: Path = STUDENT,
                  notebooks: Path = NOTEBOOKS) -> tuple[list[Path], list[Path]]:
    """Write the student copies; return (the copies written or rewritten, the files removed).

    Copies already up to date are left untouched. Without ``prefixes``, chapter-shaped
    notebooks in ``out`` that have no notebook any more are removed.
    """
    sources = sorted(notebooks.glob(CHAPTER_GLOB))
    if prefixes:
        sources = [path for path in sources if path.name.startswith(prefixes)]
    out.mkdir(parents=True, exist_ok=True)
    written, removed = [], []
    for source in sources:
        try:
            student = student_notebook(nbformat.read(source, as_version=4))
        except StudentCopyError as error:
            raise StudentCopyError(f"{source.name}: {error}") from None
        target = out / source.name
        text = nbformat.writes(student) + "\n"
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    if not prefixes:
        wanted = {source.name for source in sources}
        for stale in sorted(out.glob(CHAPTER_GLOB)):
            if stale.name not in wanted:
                stale.unlink()
                removed.append(stale)
    return written, removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="only chapters starting with these")
    parser.add_argument("--out", type=Path, default=STUDENT, help="where to write the copies")
    args = parser.parse_args(argv)
    try:
        written, removed = write_student(tuple(args.prefixes), args.out)
    except StudentCopyError as error:
        print(f"make_student: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"  wrote {path}")
    for path in removed:
        print(f"  removed stale {path}")
    if not written and not removed:
        print(f"  student copies in {args.out} are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
