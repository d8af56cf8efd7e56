# The two commands of the course: `make lab` and `make test`.
# Each creates .venv on first use and reinstalls only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: lab test notebooks export bench clean slides instructor-stats student

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

# LAB_ARGS passes extra options, e.g. `make lab LAB_ARGS="--no-browser --port 9999"`.
# JupyterLab refuses to run as root unless told; containers and CI machines often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) notebooks/

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

notebooks: $(STAMP)
	$(BIN)/python tools/build_notebooks.py

export: $(STAMP)
	$(BIN)/python -m barelab.export

bench: $(STAMP)
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/wsgi_servers.py
	$(BIN)/python benchmarks/asgi_servers.py

# Workshop kit: reveal.js slides of the first chapter of each part (build/slides/), and the
# per-chapter table of docs/instructor.md (counts, teaching estimate, measured run time).
slides: $(STAMP)
	$(BIN)/python tools/make_slides.py --out build/slides

instructor-stats: $(STAMP)
	$(BIN)/python tools/chapter_stats.py --write docs/instructor.md

# Workshop kit: student/ copies of the notebooks, exercise answers stubbed, outputs cleared.
student: $(STAMP)
	$(BIN)/python tools/make_student.py

clean:
	rm -rf $(VENV) build *.egg-info
