"""barelab.export: notebook cells marked '#| export' become barelab/built modules."""

from __future__ import annotations

import json

import pytest

from barelab import export


def make_notebook(path, *cells):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": kind, "metadata": {}, "source": source,
                     **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                    for kind, source in cells]}
    path.write_text(json.dumps(nb))


def test_export_collects_marked_cells_in_order(tmp_path):
    notebooks, built = tmp_path / "nb", tmp_path / "built"
    notebooks.mkdir()
    make_notebook(notebooks / "02_wire.ipynb",
                  ("markdown", "#| export\nnot code"),
                  ("code", "#| default_exp http_wire"),
                  ("code", "#| export\ndef a():\n    return 1"),
                  ("code", "a()  # a demo, not exported"),
                  ("code", ["#| export\n", "def b():\n", "    return 2\n"]))
    assert export.write(notebooks, built) == ["http_wire.py"]
    source = (built / "http_wire.py").read_text()
    assert "notebooks/02_wire.ipynb" in source
    assert source.index("def a()") < source.index("def b()")
    assert "a()  # a demo" not in source and "#| export" not in source
    namespace = {}
    exec(compile(source, "http_wire.py", "exec"), namespace)
    assert namespace["b"]() == 2
    assert export.drift(notebooks, built) == []


def test_check_reports_edits_missing_and_stale_modules(tmp_path):
    notebooks, built = tmp_path / "nb", tmp_path / "built"
    notebooks.mkdir()
    make_notebook(notebooks / "01.ipynb", ("code", "#| default_exp one"),
                  ("code", "#| export\nX = 1"))
    export.write(notebooks, built)
    (built / "one.py").write_text("X = 2\n")
    (built / "stale.py").write_text("")
    problems = export.drift(notebooks, built)
    assert any(p.startswith("one.py: differs") and "-X = 2" in p for p in problems)
    assert any(p.startswith("stale.py: in built/ but no notebook") for p in problems)
    (built / "one.py").unlink()
    assert any("missing from built/" in p for p in export.drift(notebooks, built))
    export.write(notebooks, built)
    assert export.drift(notebooks, built) == [] and not (built / "stale.py").exists()


def test_export_without_a_module_name_is_an_error(tmp_path):
    make_notebook(tmp_path / "03.ipynb", ("code", "#| export\nX = 1"))
    with pytest.raises(export.ExportError, match="default_exp"):
        export.expected_files(tmp_path)


def test_two_notebooks_may_not_export_the_same_module(tmp_path):
    for name in ("01.ipynb", "02.ipynb"):
        make_notebook(tmp_path / name, ("code", "#| default_exp same"),
                      ("code", "#| export\nX = 1"))
    with pytest.raises(export.ExportError, match="both"):
        export.expected_files(tmp_path)


def test_the_course_is_in_step_with_barelab_built():
    """The drift check itself: the committed barelab/built matches the notebooks."""
    assert export.drift() == [], "run `python -m barelab.export` and commit the result"


def test_check_command_exit_codes(tmp_path, monkeypatch, capsys):
    assert export.main(["--check"]) == 0
    assert "in step" in capsys.readouterr().out
    monkeypatch.setattr(export, "drift", lambda: ["x.py: differs"])
    assert export.main(["--check"]) == 1
    assert "x.py: differs" in capsys.readouterr().err


def test_export_cells_must_not_end_with_a_demo_expression(tmp_path):
    make_notebook(tmp_path / "04.ipynb", ("code", "#| default_exp demo"),
                  ("code", '#| export\n"""A docstring is fine."""\nclass E(Exception): pass\nE("demo")'))
    with pytest.raises(export.ExportError, match="bare expression at line 3"):
        export.expected_files(tmp_path)


def test_export_cells_must_be_plain_python(tmp_path):
    make_notebook(tmp_path / "05.ipynb", ("code", "#| default_exp demo"),
                  ("code", "#| export\n!curl http://example.org"))
    with pytest.raises(export.ExportError, match="not plain Python"):
        export.expected_files(tmp_path)
