"""Chapters of group 4 in JupyterLab in Chromium, links straight to the servers' ports
(browser_run.py)."""

import pytest

import jupyterlab_ui as ui
from browser_run import chapter_group, run_like_a_learner


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    with ui.running_lab(tmp) as lab, ui.chromium_page(lab) as page:
        yield page


@pytest.mark.parametrize("notebook", chapter_group(4), ids=lambda path: path.stem)
def test_run_all_in_jupyterlab_and_click_the_server_links(page, notebook):
    run_like_a_learner(page, notebook.name)
