# The two commands of the course: `make lab` and `make test`.
# Each creates .venv on first use and reinstalls only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: lab test test-browser browser notebooks export bench clean slides instructor-stats \
        student site screenshots

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

# Every chapter is run twice in one kernel, as a learner pressing Run All twice: in a real
# JupyterLab in Chromium when Debian's chromium is there (tests/test_browser_*.py, which
# also click the server links), else headless through nbclient (tests/test_rerun_*.py).
CHROMIUM     := /usr/bin/chromium
BROWSER_RUNS := $(wildcard tests/test_browser_*.py)
HEADLESS_RUNS := tests/test_rerun_even.py tests/test_rerun_odd.py
RUN_ALL_CHOICE = $$(if [ -x $(CHROMIUM) ]; \
	then echo $(addprefix --ignore=,$(HEADLESS_RUNS)); \
	else echo $(addprefix --ignore=,$(BROWSER_RUNS)); fi)

browser:
	@sh tools/install_browser.sh

# One worker per core. Four were a minute faster, but crowded the CPUs enough that a
# chapter's `curl -m 5` timed out once in four runs; `make test WORKERS=4` still works.
WORKERS ?= 2

test: $(STAMP) browser
	@[ -x $(CHROMIUM) ] && echo "Run All: in JupyterLab in Chromium" \
		|| echo "Run All: headless (no $(CHROMIUM))"
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile $(RUN_ALL_CHOICE)

# Only the JupyterLab runs; a failing chapter leaves a screenshot in build/browser-failures/.
test-browser: $(STAMP) browser
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile $(BROWSER_RUNS)

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

# A static HTML site of the course from the stored notebooks: build/site/index.html.
site: $(STAMP)
	$(BIN)/python tools/build_site.py --out build/site

# The README's pictures: chapters run in JupyterLab in Chromium, saved under docs/img/.
screenshots: $(STAMP) browser
	$(BIN)/python tools/screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info
