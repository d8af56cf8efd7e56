"""Chapters of group 3 in JupyterLab in Chromium, under a Binder-like prefix: server links
go through jupyter-server-proxy (browser_run.py)."""

from browser_run import browser_tests

page, test_run_all_in_jupyterlab_and_click_the_server_links = \
    browser_tests(3, hub_prefix=True)
