"""Run a chapter in a real JupyterLab the way a learner does, and fail on anything they'd see.

Shared by test_browser_1.py to test_browser_4.py: pytest-xdist's `--dist loadfile` gives
each file to one worker, with a JupyterLab and a Chromium of its own, so the chapters are
dealt over the four files to even out their run times. For each chapter, in one kernel:

1. open it from the file browser (double click), select the last cell (`stop_all()`) and
   choose Run > Run All Above Selected Cell: no cell may show an error or stay unrun;
2. click every barelab server link in the outputs whose server is still running: the
   browser must get the status the server answers to a direct request (so the link, and
   under a hub prefix the proxy, really lead to that server), and a page must open at
   the link unless the answer is an event stream or never comes (a long poll); a page with
   chapter 24's room chat is opened in two tabs that join one room and talk;
3. run the last cell, then Run > Run All Cells again in the same kernel (the learner who
   runs the chapter twice): again no error, every cell run, and no server left running.

Files 1 and 3 run under a JupyterHub-style prefix (`/user/learner/`, with
JUPYTERHUB_SERVICE_PREFIX set as Binder sets it), so their links go through
jupyter-server-proxy; files 2 and 4 link straight to the server's port.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import jupyterlab_ui as ui

ROOT = Path(__file__).resolve().parent.parent
FAILURES = ROOT / "build" / "browser-failures"     # a screenshot of each failing chapter
PAGE_TYPES = {"text/html", "text/plain", "application/json"}
LONG_POLL_S = 5                 # a server silent for this long is taken to be a long poll
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


GROUPS = 4
# Seconds a chapter took in this test on the course machine (2 cores, 2026-11-30), only to
# deal the chapters evenly over the files; any chapter not listed counts as 25.
SECONDS = {"25": 107, "19": 52, "17": 43, "15": 40, "06": 39, "18": 38, "10": 35, "13": 35}


def chapter_group(group: int) -> list[Path]:
    """The chapters of file ``group`` (1 to GROUPS): the longest first, each to the file
    with the least work so far."""
    loads = [0.0] * GROUPS
    dealt: list[list[Path]] = [[] for _ in range(GROUPS)]
    for path in sorted(NOTEBOOKS, key=lambda p: -SECONDS.get(p.name[:2], 25)):
        lightest = loads.index(min(loads))
        loads[lightest] += SECONDS.get(path.name[:2], 25)
        dealt[lightest].append(path)
    return sorted(dealt[group - 1])


def direct_answer(url: str) -> tuple[int | None, str]:
    """The status and media type the server answers to a GET of ``url``, with the login.

    (None, "") when it does not answer within a few seconds (a long poll, on purpose).
    """
    login = base64.b64encode(f"{ui.LOGIN['username']}:{ui.LOGIN['password']}".encode())
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {login.decode()}"})
    try:
        with urllib.request.urlopen(request, timeout=LONG_POLL_S) as response:
            return response.status, response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type()
    except TimeoutError:
        return None, ""


def shown_as_a_page(answer: tuple[int | None, str]) -> bool:
    """Whether Chromium shows this answer in a tab (not a download, not still waiting)."""
    status, media_type = answer
    return status is not None and (media_type in PAGE_TYPES or media_type.startswith("image/"))


def run_like_a_learner(page, name: str) -> list[str]:
    """Run chapter ``name`` as described above; return the links clicked."""
    ui.open_notebook(page, name)
    try:
        last = ui.select_last_cell(page)
        ui.menu(page, "Run", "Run All Above Selected Cell")
        ui.wait_until_run(page, upto=last)
        assert ui.errors(page) == [], f"{name}: errors on the first Run All"
        assert [i for i in ui.cells_not_run(page) if i < last] == [], \
            f"{name}: cells that never ran"

        servers = dict(ui.kernel_value(
            page, "[(s.link, s.url) for s in __import__('barelab').running()]"))
        clicked = [href for href in dict.fromkeys(ui.output_links(page)) if href in servers]
        rooms_pages = []
        answers = {href: direct_answer(servers[href]) for href in clicked}
        # A tab left loading by a long poll or a stream holds up the next tab's first
        # answer, so the pages go first.
        for href in sorted(clicked, key=lambda href: not shown_as_a_page(answers[href])):
            expected = answers[href][0]
            tab, status = ui.click_link(page, href,
                                        opens_a_page=shown_as_a_page(answers[href]))
            if answers[href][1] == "text/event-stream" and href.startswith("/"):
                # jupyter-server-proxy streams only to a request that accepts nothing but
                # text/event-stream (an EventSource); a tab's request it buffers, forever.
                expected = None
            assert status == expected, (f"{name}: {href} got status {status} in the "
                                        f"browser; the server answers {expected}")
            if tab is None:
                continue                               # a stream, or still waiting
            try:
                assert tab.url.endswith(href), f"{name}: {href} opened {tab.url}"
                if tab.locator("#join").count() and tab.locator("#members").count():
                    rooms_pages.append(href)
            finally:
                tab.close()
        if name.startswith(("01_", "02_")):        # they leave servers up and show links
            assert clicked, f"{name}: no server link found to click"
        if name.startswith("24_"):
            assert rooms_pages, f"{name}: the rooms page was not among {clicked}"
        for href in rooms_pages:                       # chapter 24's two-tab demo
            for tab in ui.chat_in_two_tabs(page, href):
                tab.close()

        ui.select_last_cell(page)
        ui.menu(page, "Run", "Run Selected Cell and Do not Advance")
        ui.wait_until_run(page)
        ui.menu(page, "Run", "Run All Cells")
        ui.wait_until_run(page)
        assert ui.errors(page) == [], f"{name}: errors on the second Run All"
        assert ui.cells_not_run(page) == [], f"{name}: cells that never ran the second time"
        left = ui.kernel_value(page, "[s.name for s in __import__('barelab').running()]")
        assert left == [], f"{name}: servers left running: {left}"
        print(f"{name}: clicked {clicked}, chatted on {rooms_pages}")
        return clicked
    except Exception:
        FAILURES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(FAILURES / f"{Path(name).stem}.png"))
        raise
    finally:
        ui.close_notebook(page)


def browser_tests(group: int, *, hub_prefix: bool):
    """The fixture and the test of one test_browser_N.py file, for chapter group ``group``.

    Each file only names what this returns, so pytest collects a ``page`` fixture (one
    JupyterLab and one Chromium for the file) and one test per chapter of the group.
    """
    @pytest.fixture(scope="module")
    def page(tmp_path_factory):
        tmp = tmp_path_factory.mktemp("lab")
        lab = (ui.running_lab(tmp, base_url="/user/learner/", hub_prefix=True) if hub_prefix
               else ui.running_lab(tmp))
        with lab as running, ui.chromium_page(running) as page:
            yield page

    @pytest.mark.parametrize("notebook", chapter_group(group), ids=lambda path: path.stem)
    def test_run_all_in_jupyterlab_and_click_the_server_links(page, notebook):
        run_like_a_learner(page, notebook.name)

    return page, test_run_all_in_jupyterlab_and_click_the_server_links
