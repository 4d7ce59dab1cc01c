# The two commands a newcomer needs: `make run` and `make test`.
# Each creates .venv and installs what is missing, by itself.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench venv lint clean compose-check

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

## make bench: throughput and latency figures with their conditions
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf var/ .pytest_cache
