"""The README tells the truth: two commands first, a working badge, the real chapter list."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def notebook_titles() -> dict[str, str]:
    titles = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        first = "".join(json.loads(path.read_text())["cells"][0]["source"]).splitlines()[0]
        match = re.match(r"# (\d\d)\. (.+)", first)
        assert match, f"{path.name}: first line should be '# NN. Title'"
        titles[match.group(1)] = match.group(2).strip()
    return titles


def test_the_two_commands_come_first():
    first_block = README.split("```")[1]
    assert "make lab" in first_block and "make test" in first_block
    assert README.index("make lab") < README.index("mybinder.org")


def test_binder_badge_opens_jupyterlab_on_chapter_one():
    match = re.search(r"\(https://mybinder\.org/v2/gh/[^/]+/[^/]+/[^?)]+\?urlpath=lab/tree/"
                      r"(notebooks/[^)]+\.ipynb)\)", README)
    assert match, "README needs a Binder badge that opens JupyterLab (urlpath=lab/tree/...)"
    assert match.group(1).startswith("notebooks/01_") and (ROOT / match.group(1)).exists()


def test_chapter_list_matches_the_notebooks():
    listed = dict(re.findall(r"^- \*\*(\d\d) (.+?)\*\*", README, flags=re.M))
    assert listed == notebook_titles(), "README's chapter list and notebooks/ disagree"


def test_every_picture_in_the_readme_exists():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    local = [path for path in pictures if not path.startswith("http")]
    assert len(local) >= 4, "the README shows screenshots of the course"
    assert [path for path in local if not (ROOT / path).is_file()] == []
