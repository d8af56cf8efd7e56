"""Chapters of group 1 in JupyterLab in Chromium, under a Binder-like prefix: server links
go through jupyter-server-proxy (browser_run.py)."""

import pytest

import jupyterlab_ui as ui
from browser_run import chapter_group, run_like_a_learner


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    with ui.running_lab(tmp, base_url="/user/learner/", hub_prefix=True) as lab, ui.chromium_page(lab) as page:
        yield page


@pytest.mark.parametrize("notebook", chapter_group(1), ids=lambda path: path.stem)
def test_run_all_in_jupyterlab_and_click_the_server_links(page, notebook):
    run_like_a_learner(page, notebook.name)
