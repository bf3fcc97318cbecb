# `make run` and `make test` work on a fresh clone: they create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck flowtests pytest format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/agentbot serve

test: lint typecheck flowtests pytest

lint: $(STAMP)
	$(BIN)/ruff check agentbot tests bench
	$(BIN)/ruff format --check agentbot tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The shipped flows' conversation tests (flows/tests), through the pure engine: no database.
flowtests: $(STAMP)
	FLOWS_DIR=flows $(BIN)/agentbot test flows/tests

# The pure core (no I/O, no clock) is covered branch for branch; the whole package at 90%.
PURE := agentbot/flows.py,agentbot/validation.py,agentbot/loader.py,agentbot/flowchecks.py,$\
	agentbot/events.py,agentbot/engine.py,agentbot/expressions.py,agentbot/templates.py,$\
	agentbot/answers.py,agentbot/channels.py,agentbot/lifecycle.py,agentbot/hours.py,$\
	agentbot/splits.py,agentbot/jsonsafe.py,agentbot/matching.py

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=90 $(PYTEST_ARGS)
	@echo "== branch coverage of the pure modules (must be 100%)"
	$(BIN)/coverage report --include='$(PURE)' --show-missing --fail-under=100

format: $(STAMP)
	$(BIN)/ruff format agentbot tests bench
	$(BIN)/ruff check --fix agentbot tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
