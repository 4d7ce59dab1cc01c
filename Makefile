# The two commands a newcomer needs: `make run` and `make test`.
# Each creates .venv and installs what is missing, by itself.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench venv lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

## make run: the whole mesh on embedded infrastructure (Ctrl+C stops everything)
run: $(STAMP)
	$(BIN)/hats up

## make test: unit and integration tests against embedded infrastructure
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make lint: formatting, lint and types (CI runs it before the tests)
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

## make format: apply the formatter and the lint's safe fixes
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make bench: throughput and latency figures with their conditions
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf var/ .pytest_cache
