# `make run` and `make test` work on a fresh clone: they create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/agentbot serve

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check agentbot tests bench
	$(BIN)/ruff format --check agentbot tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format agentbot tests bench
	$(BIN)/ruff check --fix agentbot tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
