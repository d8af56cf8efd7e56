"""Per-chapter figures for the instructor guide: size, estimated teaching time, run time.

For each notebook in ``notebooks/`` it counts the demo code cells (code cells that are not
an exercise's solution or check), the exercises, and the words of prose, turns them into an
estimate of the time to teach the chapter live, and (unless ``--no-run``) executes the
notebook in a fresh kernel, one cell at a time, to measure its pure run time and its
slowest cell. Notebooks are read, never written.

The estimate, in minutes (rounded to 5):

    demo    = 1.5 per demo code cell (run it, read the output aloud, one remark)
    reading = words of prose before "## Exercises" / 150 (read and discussed in the room)
    exercises = per exercise, 10 if its solution is at most 8 lines, else 15

    python tools/chapter_stats.py                   # every chapter, with run times
    python tools/chapter_stats.py 01 04 --no-run    # just the counts, at once
    python tools/chapter_stats.py --write docs/instructor.md   # also refresh the guide
    python tools/chapter_stats.py 06 --sections     # minutes per ## section, to plan a cut

``--write`` replaces what sits between the ``<!-- chapter-stats:start -->`` and
``<!-- chapter-stats:end -->`` markers of the file with the table printed. ``make
instructor-stats`` runs exactly that.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
START, END = "<!-- chapter-stats:start -->", "<!-- chapter-stats:end -->"

MIN_PER_DEMO_CELL = 1.5
WORDS_PER_MIN = 150
SHORT_SOLUTION_LINES = 8
MIN_PER_SHORT_EXERCISE, MIN_PER_LONG_EXERCISE = 10, 15


@dataclass
class Stats:
    number: str
    title: str
    demo_cells: int = 0
    exercises: int = 0
    solution_lines: list[int] = field(default_factory=list)
    prose_words: int = 0
    exercise_words: int = 0
    run_seconds: float | None = None
    slowest: tuple[float, int, str] | None = None  # seconds, cell index, first line
    error: str | None = None

    @property
    def demo_minutes(self) -> float:
        return self.demo_cells * MIN_PER_DEMO_CELL + self.prose_words / WORDS_PER_MIN

    @property
    def exercise_minutes(self) -> float:
        return sum(MIN_PER_SHORT_EXERCISE if n <= SHORT_SOLUTION_LINES else MIN_PER_LONG_EXERCISE
                   for n in self.solution_lines)


def source_of(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def solution_length(text: str) -> int:
    """Lines between ### BEGIN SOLUTION and ### END SOLUTION (blank lines not counted)."""
    inside, count = False, 0
    for line in text.splitlines():
        if "### BEGIN SOLUTION" in line:
            inside = True
        elif "### END SOLUTION" in line:
            inside = False
        elif inside and line.strip():
            count += 1
    return count


def count(nb: nbformat.NotebookNode, path: Path) -> Stats:
    first = source_of(nb.cells[0]).splitlines()[0]
    match = re.match(r"#\s*(\d\d)\.\s*(.+)", first)
    number, title = (match.group(1), match.group(2).strip()) if match else (path.name[:2], first)
    stats = Stats(number, title)
    in_exercises = False
    for cell in nb.cells:
        text = source_of(cell)
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown":
            if re.search(r"^## Exercises\b", text, flags=re.M):
                before, _, after = text.partition("## Exercises")
                stats.prose_words += len(before.split())
                stats.exercise_words += len(after.split())
                in_exercises = True
            elif in_exercises:
                stats.exercise_words += len(text.split())
            else:
                stats.prose_words += len(text.split())
            stats.exercises += len(re.findall(r"^### Exercise \d+", text, flags=re.M))
        elif cell.cell_type == "code":
            if "solution" in tags:
                stats.solution_lines.append(solution_length(text))
            elif "check" not in tags:
                stats.demo_cells += 1
    # A chapter with more exercise headings than solution cells: count the rest as short.
    stats.solution_lines += [0] * max(0, stats.exercises - len(stats.solution_lines))
    return stats


def sections(nb: nbformat.NotebookNode) -> list[tuple[str, int, int, float]]:
    """Per ## section (exercises excluded): title, demo cells, prose words, minutes."""
    found: list[list] = [["(title and goals)", 0, 0]]
    for cell in nb.cells:
        text = source_of(cell)
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown":
            for line in text.splitlines():
                if line.startswith("## "):
                    found.append([line[3:].strip(), 0, 0])
                else:
                    found[-1][2] += len(line.split())
        elif cell.cell_type == "code" and not {"solution", "check"} & set(tags):
            found[-1][1] += 1
    return [(title, cells, words, cells * MIN_PER_DEMO_CELL + words / WORDS_PER_MIN)
            for title, cells, words in found if title not in ("Exercises", "Clean up")]


def run(nb: nbformat.NotebookNode, stats: Stats, timeout: int) -> None:
    """Execute every cell in a fresh kernel; record the summed cell time and the slowest."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    total, slowest = 0.0, (0.0, -1, "")
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                started = time.perf_counter()
                client.execute_cell(cell, index)
                elapsed = time.perf_counter() - started
                total += elapsed
                if elapsed > slowest[0]:
                    line = next((l for l in source_of(cell).splitlines()
                                 if l.strip() and not l.startswith("#")), "")
                    slowest = (elapsed, index, line.strip())
    except CellExecutionError as error:
        stats.error = str(error).strip().splitlines()[-1][:120]
    stats.run_seconds, stats.slowest = total, slowest


def minutes(value: float) -> str:
    return f"{int(5 * round(value / 5))}"


def table(all_stats: list[Stats], ran: bool) -> str:
    head = ["Ch.", "Title", "Demo cells", "Prose words", "Exercises",
            "Demo + reading (min)", "Exercises (min)", "Teach total (min)"]
    if ran:
        head += ["Run time (s)", "Slowest cell"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    totals = [0.0, 0.0, 0.0]
    for s in all_stats:
        total = s.demo_minutes + s.exercise_minutes
        totals = [totals[0] + s.demo_minutes, totals[1] + s.exercise_minutes, totals[2] + total]
        row = [s.number, s.title, str(s.demo_cells), str(s.prose_words), str(s.exercises),
               minutes(s.demo_minutes), minutes(s.exercise_minutes), minutes(total)]
        if ran:
            if s.error:
                row += ["failed", s.error.replace("|", "\\|")]
            else:
                seconds, index, line = s.slowest
                snippet = line if len(line) <= 40 else line[:37] + "..."
                snippet = snippet.replace("|", "\\|").replace("`", "'")
                row += [f"{s.run_seconds:.1f}", f"{seconds:.1f} s, cell {index} (`{snippet}`)"]
        lines.append("| " + " | ".join(row) + " |")
    row = ["", "**all**", "", "", str(sum(s.exercises for s in all_stats)),
           minutes(totals[0]), minutes(totals[1]), minutes(totals[2])]
    if ran:
        row += [f"{sum(s.run_seconds or 0 for s in all_stats):.0f}", ""]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_into(path: Path, text: str) -> None:
    document = path.read_text()
    if START not in document or END not in document:
        raise SystemExit(f"{path}: no {START} ... {END} markers to write between")
    before, _, rest = document.partition(START)
    _, _, after = rest.partition(END)
    path.write_text(f"{before}{START}\n{text}\n{END}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="only chapters whose file name starts so")
    parser.add_argument("--no-run", action="store_true", help="count only; do not execute")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell")
    parser.add_argument("--write", type=Path, help="replace the marked table in this file")
    parser.add_argument("--sections", action="store_true",
                        help="print minutes per ## section instead (no run)")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        paths = [p for p in paths if p.name.startswith(tuple(args.prefixes))]
    if not paths:
        print("no notebooks matched", file=sys.stderr)
        return 1
    if args.sections:
        for path in paths:
            print(f"\n{path.stem}")
            for title, cells, words, mins in sections(nbformat.read(path, as_version=4)):
                print(f"  {mins:5.0f} min  {cells:3d} cells {words:5d} words  {title}")
        return 0
    all_stats = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        stats = count(nb, path)
        if not args.no_run:
            print(f"running {path.name} ...", file=sys.stderr, flush=True)
            run(nb, stats, args.timeout)
        all_stats.append(stats)
    ran = not args.no_run
    text = table(all_stats, ran)
    note = (f"Generated by `make instructor-stats` (tools/chapter_stats.py) on "
            f"{time.strftime('%Y-%m-%d')}. Teach time = {MIN_PER_DEMO_CELL} min per demo cell "
            f"+ prose at {WORDS_PER_MIN} words/min + {MIN_PER_SHORT_EXERCISE} min per exercise "
            f"(solution ≤ {SHORT_SOLUTION_LINES} lines) or {MIN_PER_LONG_EXERCISE} min "
            f"(longer), rounded to 5 min.")
    if ran:
        note += (" Run time = the sum of every code cell's execution in a fresh kernel, "
                 "solutions included, kernel start-up excluded.")
    print(text)
    if args.write:
        write_into(args.write, f"{note}\n\n{text}")
        print(f"\nwrote the table into {args.write}", file=sys.stderr)
    return 1 if any(s.error for s in all_stats) else 0


if __name__ == "__main__":
    sys.exit(main())
