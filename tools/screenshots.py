"""Take the README's screenshots: chapters run in a real JupyterLab in Debian's Chromium.

    python tools/screenshots.py            # -> docs/img/*.png
    python tools/screenshots.py 19 24      # only these chapters' pictures

Each picture is made the way a learner sees it: JupyterLab starts on a copy of notebooks/,
the chapter is opened from the file browser and run with Run > Run All Above Selected Cell,
and the notebook is scrolled to the cell that the picture is about. The rooms picture
opens chapter 24's link twice, as the chapter asks, and chats between the two tabs.
Uses the same driver as the browser tests (tests/jupyterlab_ui.py).
"""

from __future__ import annotations

import base64
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import jupyterlab_ui as ui  # noqa: E402

IMAGES = ROOT / "docs" / "img"

# (chapter, a line of the cell to show at the top, picture)
NOTEBOOK_SHOTS = [
    ("01_frameworks_are_callables.ipynb", "flask_server = barelab.serve(flask_app)",
     "01-serve-and-curl.png"),
    ("02_http_is_just_text.ipynb", "exchange = barelab.raw_exchange(",
     "02-bytes-on-the-wire.png"),
    ("19_conformance.ipynb", "The table is long, so read it",
     "19-conformance-table.png"),
]
ROOMS = ("24_websocket_rooms.ipynb", "server = barelab.serve(rooms_app)",
         "24-rooms-two-tabs.png")


def run_up_to_the_end(page, name: str) -> None:
    ui.open_notebook(page, name)
    last = ui.select_last_cell(page)
    ui.menu(page, "Run", "Run All Above Selected Cell")
    ui.wait_until_run(page, upto=last)
    problems = ui.errors(page)
    if problems:
        raise SystemExit(f"{name}: {problems}")


def scroll_to_cell(page, line: str) -> None:
    """Make the cell containing ``line`` the first one on screen."""
    index = ui.cell_index(page, "(cell, line) => cell.model.sharedModel.getSource()"
                                ".includes(line)", line)
    if index < 0:
        raise SystemExit(f"no cell contains {line!r}")
    for _ in range(10):                         # a long jump lands near the cell: settle
        if abs(ui.show_cell(page, index, "start")) < 40:
            break
        page.wait_for_timeout(500)
    page.wait_for_timeout(800)                  # let the cells scrolled into view render


def side_by_side(page, left: bytes, right: bytes, target: Path) -> None:
    """Put two tab screenshots next to each other in one picture."""
    def image(data: bytes) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}">'
    sheet = page.context.new_page()
    sheet.set_viewport_size({"width": 1290, "height": 620})
    sheet.set_content('<body style="margin:0;display:flex;gap:10px;background:#d0d7de">'
                      f"{image(left)}{image(right)}</body>")
    sheet.screenshot(path=str(target))
    sheet.close()


def main(chapters: list[str]) -> int:
    def wanted(name: str) -> bool:
        return not chapters or name[:2] in chapters
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, ui.running_lab(Path(tmp)) as lab, \
            ui.chromium_page(lab) as page:
        page.evaluate("() => jupyterapp.commands.execute('application:toggle-left-area')")
        for name, line, picture in NOTEBOOK_SHOTS:
            if not wanted(name):
                continue
            run_up_to_the_end(page, name)
            scroll_to_cell(page, line)
            # A clip of the page, not an element screenshot, which would scroll the page
            # and make JupyterLab jump back to the top of the notebook.
            box = page.locator(".jp-NotebookPanel").last.bounding_box()
            page.screenshot(path=str(IMAGES / picture), clip=box)
            print(f"wrote docs/img/{picture}")
            ui.close_notebook(page)

        name, line, picture = ROOMS
        if not wanted(name):
            return 0
        run_up_to_the_end(page, name)
        scroll_to_cell(page, line)
        link = page.locator(".jp-Cell.jp-mod-active .jp-OutputArea-output a").first \
            .get_attribute("href")
        alice, bob = ui.chat_in_two_tabs(page, link)
        shots = []
        for tab in (alice, bob):
            tab.set_viewport_size({"width": 640, "height": 620})
            shots.append(tab.screenshot())
            tab.close()
        side_by_side(page, *shots, IMAGES / picture)
        print(f"wrote docs/img/{picture}")
        ui.close_notebook(page)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
