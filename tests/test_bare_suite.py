"""barelab.built.bare_suite (chapter 25): the notebook's pytest suite for bare, run as is.

Every test and fixture is defined in notebooks/25_a_test_suite_for_bare.ipynb; importing them
here is enough for pytest to collect them. Each HTTP test runs three times: in-process with
chapter 17's TestClient, and over real sockets on barelab's server and the course's own.
"""

from barelab.built.bare_suite import *  # noqa: F401,F403  (tests and fixtures)
