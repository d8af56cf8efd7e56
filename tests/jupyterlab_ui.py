"""Drive a real JupyterLab in Debian's Chromium, as a learner does: open, Run All, click links.

Shared by the browser tests (browser_run.py) and tools/screenshots.py. JupyterLab runs on a
copy of notebooks/ in a temporary folder (its autosave must never touch the committed
notebooks), with its own settings and workspace folders so no earlier session's layout or
news pop-up gets in the way. ``expose_app_in_browser`` puts the app at ``window.jupyterapp``:
the test clicks menus like a learner, and reads what ran from the notebook model through
that object (a prompt in the page can be scrolled away; the model's counts cannot).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("BARELAB_CHROMIUM", "/usr/bin/chromium"))
TOKEN = "barelab-browser-test"
# Without the networking flags Chromium keeps trying Google's hosts, which a closed
# network refuses by the dozen; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
# A chapter that has not finished by then never will.
RUN_ALL_TIMEOUT_S = int(os.environ.get("BARELAB_RUN_ALL_TIMEOUT", 300))

# Chapter 07's notes app asks for a password, which its prose gives; the browser types it
# in when asked, as the learner does (a headless browser cannot show the prompt).
LOGIN = {"username": "ada", "password": "lovelace"}

NO_NEWS = {"fetchNews": "false", "checkForUpdates": False}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Lab:
    base: str           # e.g. http://127.0.0.1:8888/user/learner/

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@contextmanager
def running_lab(tmp: Path, *, base_url: str = "/", hub_prefix: bool = False):
    """Start JupyterLab on a copy of notebooks/ and yield a :class:`Lab`.

    With ``hub_prefix`` the kernel sees ``JUPYTERHUB_SERVICE_PREFIX = base_url``, as under
    Binder, so barelab's links go through jupyter-server-proxy's ``{base_url}proxy/{port}/``.
    """
    folder = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(NO_NEWS))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    env.pop("JUPYTERHUB_SERVICE_PREFIX", None)
    if hub_prefix:
        env["JUPYTERHUB_SERVICE_PREFIX"] = base_url
    log = tmp / "jupyterlab.log"
    args = [str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser",
            "--ip=127.0.0.1", f"--port={free_port()}", "--ServerApp.port_retries=50",
            f"--ServerApp.base_url={base_url}", f"--IdentityProvider.token={TOKEN}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
            f"--LabApp.user_settings_dir={tmp / 'settings'}",
            f"--LabApp.workspaces_dir={tmp / 'workspaces'}"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    with open(log, "wb") as sink:
        proc = subprocess.Popen(args, cwd=folder, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield wait_for_status(tmp / "runtime", log, proc)
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM a process started with ``start_new_session``, and its children; then KILL."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def wait_for_status(runtime: Path, log: Path, proc: subprocess.Popen,
                    timeout: float = 90) -> Lab:
    """Wait until the server answers; return it as a :class:`Lab`.

    The port asked for was free a moment ago but may have been taken since: the server then
    moves to the next one (``port_retries``) and writes where it went into its runtime file.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = json.loads(next(runtime.glob("jpserver-*.json")).read_text())
            lab = Lab(base=info["url"].rstrip("/") + "/")
            request = urllib.request.Request(lab.url("api/status"),
                                             headers={"Authorization": f"token {TOKEN}"})
            urllib.request.urlopen(request, timeout=2).read()
            return lab
        except (OSError, StopIteration, ValueError, KeyError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n"
                                   + log.read_text(errors="replace")[-3000:])
            time.sleep(0.25)


@contextmanager
def chromium_page(lab: Lab):
    """A Chromium page logged in to ``lab`` (the token goes in once, as a cookie)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860},
                                      http_credentials=LOGIN)
        page = context.new_page()
        page.goto(lab.url(f"lab?token={TOKEN}&reset"))
        page.wait_for_function("() => window.jupyterapp && jupyterapp.shell", timeout=90_000)
        page.wait_for_selector(".jp-DirListing-item", timeout=90_000)
        try:
            yield page
        finally:
            browser.close()


# -- the notebook in the main area ------------------------------------------------------
CURRENT = "jupyterapp.shell.currentWidget"

KERNEL_IDLE = f"""() => {{
    const panel = {CURRENT};
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
                   && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}}"""

# Finished: the kernel is idle and every code cell ran, or one failed (JupyterLab then
# stops the queue, so the cells after it keep an empty prompt).
RUN_FINISHED = f"""(upto) => {{
    const panel = {CURRENT};
    if (panel.sessionContext.session.kernel.status !== 'idle') return false;  // still busy
    const cells = panel.content.widgets.slice(0, upto < 0 ? undefined : upto)
                       .filter(cell => cell.model.type === 'code');
    const failed = cells.some(cell => cell.model.outputs.toJSON()
                                           .some(out => out.output_type === 'error'));
    const kernel = panel.sessionContext.session.kernel;
    return kernel.status === 'idle'
           && (failed || cells.every(cell => cell.model.executionCount !== null));
}}"""

ERRORS = f"""() => {CURRENT}.content.widgets.flatMap((cell, index) =>
    cell.model.type !== 'code' ? [] : cell.model.outputs.toJSON()
        .filter(out => out.output_type === 'error')
        .map(out => `cell ${{index}}: ${{out.ename}}: ${{out.evalue}}`))"""

NOT_RUN = f"""() => {CURRENT}.content.widgets.flatMap((cell, index) =>
    cell.model.type === 'code' && cell.model.executionCount === null ? [index] : [])"""


def open_notebook(page, name: str) -> None:
    """Open ``name`` from the file browser with a double click, and wait for its kernel."""
    page.evaluate("() => jupyterapp.commands.execute('filebrowser:go-to-path', {path: '/'})")
    item = page.locator(".jp-DirListing-item", has_text=name[:-len(".ipynb")]).first
    item.dblclick()
    page.wait_for_function(f"(name) => {CURRENT} && {CURRENT}.context "
                           f"&& {CURRENT}.context.path === name", arg=name, timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)


def close_notebook(page) -> None:
    """Close the notebook and shut its kernel down (the learner's 'Close and Shut Down')."""
    page.evaluate(f"""async () => {{
        const panel = {CURRENT};
        await panel.sessionContext.shutdown();
        panel.dispose();
    }}""")


def menu(page, top: str, item: str) -> None:
    """Click menu ``top``, then its entry labelled exactly ``item``."""
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel").filter(
        has_text=re.compile(f"^{re.escape(item)}$")).first.click()


def wait_until_run(page, upto: int = -1) -> None:
    page.wait_for_function(RUN_FINISHED, arg=upto, timeout=RUN_ALL_TIMEOUT_S * 1000,
                           polling=500)


def errors(page) -> list[str]:
    return page.evaluate(ERRORS)


def cells_not_run(page) -> list[int]:
    return page.evaluate(NOT_RUN)


def select_last_cell(page) -> int:
    return page.evaluate(f"""() => {{
        const notebook = {CURRENT}.content;
        notebook.activeCellIndex = notebook.widgets.length - 1;
        notebook.mode = 'command';
        return notebook.activeCellIndex;
    }}""")


def kernel_value(page, expression: str):
    """Evaluate ``expression`` in the notebook's kernel, silently, and return it from JSON.

    A silent request with a user expression adds no cell, output or execution count.
    """
    code = f"__import__('json').dumps({expression})"
    reply = page.evaluate(f"""async (code) => {{
        const kernel = {CURRENT}.sessionContext.session.kernel;
        const future = kernel.requestExecute({{code: '', silent: true, store_history: false,
                                              user_expressions: {{value: code}}}});
        const reply = await future.done;
        return reply.content.user_expressions.value;
    }}""", code)
    if reply.get("status") != "ok":
        raise RuntimeError(f"{expression}: {reply.get('ename')}: {reply.get('evalue')}")
    return json.loads(ast.literal_eval(reply["data"]["text/plain"]))   # repr of the JSON


def output_links(page) -> list[str]:
    """The ``href`` of every barelab server link in the notebook's outputs (model, not DOM)."""
    return page.evaluate(f"""() => {CURRENT}.content.widgets.flatMap(cell =>
        cell.model.type !== 'code' ? [] : cell.model.outputs.toJSON().flatMap(out => {{
            const html = out.data && out.data['text/html'];
            if (!html) return [];
            const text = Array.isArray(html) ? html.join('') : html;
            return [...text.matchAll(/is serving at <a href="([^"]+)" target="_blank">/g)]
                   .map(match => match[1].replace(/&amp;/g, '&'));
        }}))""")


def show_cell(page, index: int, block: str = "center") -> float:
    """Make cell ``index`` the active one and scroll it into view; return how far its top
    is from the notebook's (JupyterLab guesses the height of cells never drawn, so after a
    long jump the cell can be near its place rather than on it: call again to settle)."""
    return page.evaluate(f"""([index, block]) => {{
        const notebook = {CURRENT}.content;
        notebook.activeCellIndex = index;
        // Off-screen cells are laid out but not drawn (content-visibility), so a link in
        // one is not clickable until the cell is scrolled into view.
        notebook.widgets[index].node.scrollIntoView({{block}});
        const cell = notebook.widgets[index].node.getBoundingClientRect();
        return cell.top - notebook.node.getBoundingClientRect().top;
    }}""", [index, block])


def cell_index(page, test: str, arg) -> int:
    """The index of the first cell for which the JavaScript ``test(cell, arg)`` holds."""
    return page.evaluate(f"""(arg) => {CURRENT}.content.widgets.findIndex(
        cell => ({test})(cell, arg))""", arg)


def click_link(page, href: str, *, opens_a_page: bool = True):
    """Scroll the link into view and click it; return the new tab and its HTTP status.

    Chromium hands out the new tab only once it shows something. A server that never
    answers (chapter 11's long poll) or answers with an endless event stream (which the
    browser does not show as a page) gives none: with ``opens_a_page=False`` the tab is
    None and the status is that of the response to the click's request, or None if no
    answer came within five seconds.
    """
    show_cell(page, cell_index(page, "(cell, href) => cell.model.type === 'code' && "
                                     "JSON.stringify(cell.model.outputs.toJSON()).includes(href)",
                               href))
    link = page.locator(f'.jp-OutputArea-output a[href="{href}"]').last
    link.wait_for(timeout=30_000)
    if not opens_a_page:
        statuses = []
        def answered(response):
            if response.request.is_navigation_request() and response.url.endswith(href):
                statuses.append(response.status)
        page.context.on("response", answered)
        try:
            with page.context.expect_event(
                    "request", lambda request: request.is_navigation_request()
                    and request.url.endswith(href)):
                link.click()
            for _ in range(50):                          # five seconds
                if statuses:
                    break
                page.wait_for_timeout(100)
        finally:
            page.context.remove_listener("response", answered)
        return None, (statuses[0] if statuses else None)
    with page.context.expect_page() as opened:
        link.click()
    tab = opened.value
    tab.wait_for_load_state("load")
    status = tab.evaluate("() => performance.getEntriesByType('navigation')[0].responseStatus")
    return tab, status


# -- chapter 24's rooms page, in two tabs -------------------------------------------------
def join_room(tab, room: str, name: str) -> None:
    tab.fill("#room", room)
    tab.fill("#name", name)
    tab.click("#join")
    tab.wait_for_function("() => document.getElementById('status').textContent "
                          "=== 'connected'", timeout=15_000)


def chat_in_two_tabs(page, href: str):
    """Open the rooms page twice, join one room as alice and bob, and talk.

    Returns the two tabs (the caller closes them) once each has seen the other: alice's
    log holds bob's line, and both "Here:" lines list both names.
    """
    tabs = []
    for _ in range(2):
        with page.context.expect_page() as opened:
            page.locator(f'.jp-OutputArea-output a[href="{href}"]').last.click()
        tabs.append(opened.value)
        tabs[-1].wait_for_load_state("load")
    alice, bob = tabs
    join_room(alice, "kitchen", "alice")
    join_room(bob, "kitchen", "bob")
    for tab in tabs:
        tab.wait_for_function("() => document.getElementById('members').textContent "
                              "=== 'alice, bob'", timeout=15_000)
    bob.fill("#text", "is the kettle on?")
    bob.press("#text", "Enter")
    alice.wait_for_function("() => document.getElementById('log').textContent"
                            ".includes('bob: is the kettle on?')", timeout=15_000)
    alice.fill("#text", "it is now")
    alice.press("#text", "Enter")
    bob.wait_for_function("() => document.getElementById('log').textContent"
                          ".includes('alice: it is now')", timeout=15_000)
    return alice, bob
