"""Chapters of group 2 in JupyterLab in Chromium, with links straight to the servers'
ports (browser_run.py)."""

from browser_run import browser_tests

page, test_run_all_in_jupyterlab_and_click_the_server_links = \
    browser_tests(2, hub_prefix=False)
