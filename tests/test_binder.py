"""Binder: rebuild what repo2docker builds, in a fresh venv, and run a chapter in it.

repo2docker with a ``binder/`` folder ignores the root pyproject.toml and installs
``binder/requirements.txt`` from the repository root; ``runtime.txt`` picks the Python.
This test does the same in a throwaway venv (with that Python where this machine has it)
and executes the first chapter there, so a dependency missing from Binder fails here.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def binder_python() -> str:
    """The interpreter runtime.txt asks for if this machine has it, else ours."""
    version = (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python3")))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


def test_binder_files_say_what_repo2docker_needs():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert runtime.startswith("python-3.")
    requirements = [line.strip() for line in (BINDER / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    assert "-e ." in requirements, "the course itself must be installed on Binder"
    assert "curl" in (BINDER / "apt.txt").read_text().split()


def test_binder_environment_builds_and_runs_chapter_one(tmp_path):
    venv = tmp_path / "binder-venv"
    subprocess.run([binder_python(), "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # --no-compile: the .pyc files of a few thousand modules the test never imports cost
    # more CPU than the rest of the install.
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile"]
    # As repo2docker does: from the repository root, exactly the requirements file.
    subprocess.run(pip + ["-r", "binder/requirements.txt"], cwd=ROOT, check=True, timeout=600)

    probe = ("import barelab, jupyterlab, jupyter_server_proxy, h11, wsproto, flask, "
             "starlette; print(barelab.__name__)")
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "barelab"
    extensions = subprocess.run([str(venv / "bin" / "jupyter"), "server", "extension", "list"],
                                capture_output=True, text=True, check=True)
    assert "jupyter_server_proxy" in extensions.stdout + extensions.stderr

    chapter = sorted((ROOT / "notebooks").glob("01_*.ipynb"))
    if not chapter:
        pytest.fail("notebooks/01_*.ipynb is missing")
    executed = tmp_path / "executed.ipynb"
    subprocess.run([python, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                    "--ExecutePreprocessor.timeout=120", "--ExecutePreprocessor.kernel_name=python3",
                    str(chapter[0]), "--output", str(executed)],
                   cwd=ROOT / "notebooks", check=True, timeout=300,
                   env={**os.environ, "JUPYTER_PATH": str(venv / "share" / "jupyter")})
    assert executed.exists()

