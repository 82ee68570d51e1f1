# NormLab entry points. Each target creates .venv when it is missing; CI calls `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# nbgrader runs `alembic` through PATH: keep the venv's bin first for every recipe.
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg

.PHONY: demo lab test test-fast test-browser build validate samples lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -m pip install -q -e ".[dev,browser]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import grader, utils, torch, nbgrader, pytest, playwright" && touch $@

demo: $(VENV)/.installed  ## build the release, grade samples/, print grades, write feedback
	$(BIN)/python -m grader demo

lab: $(VENV)/.installed  ## open JupyterLab on the student notebooks
	$(BIN)/jupyter lab notebooks/

test: $(VENV)/.installed  ## lint, release check, validation of every lesson, the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m grader build --check
	$(BIN)/python -m grader validate
	$(BIN)/python -m pytest

test-browser: $(VENV)/.installed  ## only the browser tests: every lesson and formgrader in Chromium
	$(BIN)/python -m pytest -m browser tests/browser

test-fast: $(VENV)/.installed  ## the test suite without the slow (notebook-executing) tests
	$(BIN)/python -m pytest -m "not slow"

build: $(VENV)/.installed  ## regenerate notebooks/ from solutions/
	$(BIN)/python -m grader build

validate: $(VENV)/.installed  ## solutions pass, releases fail and leak nothing
	$(BIN)/python -m grader validate

samples: build  ## regenerate the sample class in samples/ from the release and the solutions
	$(BIN)/python samples/generate.py

lint: $(VENV)/.installed
	$(BIN)/ruff check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf .course .pytest_cache .ruff_cache .hypothesis
