# Two commands do all the set-up:  make grade  (grade the bundled samples)  and  make test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= grading-output
RUBRICS ?= rubrics/hw2.toml rubrics/hw2_course.toml

.PHONY: setup system-deps grade test test-fast notebooks clean

$(BIN)/grader: pyproject.toml $(RUBRICS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: the pinned wheel comes from local disk on the course machines.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,cluster]'
	# The course's environment in the student kernel, as the rubrics declare it (execution.packages).
	$(BIN)/pip install --quiet $$($(BIN)/grader environment $(foreach r,$(RUBRICS),--rubric $(r)) --requirements)
	touch $@

# The sandbox needs bubblewrap; the HTML reports are tested in Chromium (Debian packages);
# installing them needs root.
APT_DEPS := bubblewrap chromium chromium-driver
system-deps:
	@command -v bwrap >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_DEPS); \
	  else echo "missing system packages: run 'sudo apt-get install $(APT_DEPS)'" >&2; exit 1; fi; }

setup: system-deps $(BIN)/grader

grade: setup
	$(BIN)/grader grade sample_submissions --tables sample_tables --out $(OUT)

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

notebooks: setup
	$(BIN)/python reference/hw2/build.py

clean:
	rm -rf $(OUT) .pytest_cache
