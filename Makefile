# Every target sets itself up: a virtual environment in .venv with the project installed.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: run test test-fast lint demo bench install clean reliability

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

HOST ?= 127.0.0.1
PORT ?= 8000

## Serve on the embedded default (SQLite under ./var/), registry loaded, http://$(HOST):$(PORT) (make run PORT=8080 HOST=0.0.0.0)
run: $(BIN)/.installed
	$(BIN)/chiso serve --host $(HOST) --port $(PORT)

## The whole test suite, both stores (PostgreSQL at CHISO_TEST_PG, default the local server), over two
## processes (pytest-xdist; the tests of real processes start first)
test: $(BIN)/.installed
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n 2 --dist loadgroup $(TEST_ARGS)

## The edit-test loop: unit tests and the integration tests on SQLite alone (no server needed), without
## the tests marked slow (real chiso processes, whole-country answers, waits in real time) and the further seeds of the
## random-stream tests (marked extra_seed), which `make test` runs
# PYTHONDONTWRITEBYTECODE set empty: pytest keeps its rewritten test modules (and Python its bytecode)
# from one run to the next, 3 s of each process's start where the variable is set
test-fast: $(BIN)/.installed
	PYTHONDONTWRITEBYTECODE= CHISO_STORES=sqlite $(BIN)/pytest tests/unit tests/integration -q -x -p no:cacheprovider \
		-p no:schemathesis -n 2 --dist loadgroup -m "not slow and not extra_seed" $(TEST_ARGS)

## The reliability suite, long form (crash loop, database restart, central outage, fuzz, abuse, access);
## `make test` runs its short form. Rows of the fault table: test-output/reliability/table.jsonl
reliability: $(BIN)/.installed
	CHISO_RELIABILITY=long $(BIN)/pytest tests/reliability --timeout 3600 $(RELIABILITY_ARGS)

## Style: ruff check and ruff format --check (the rules are in pyproject.toml)
lint: $(BIN)/.installed
	$(BIN)/ruff check app tests bench migrations
	$(BIN)/ruff format --check app tests bench migrations

## A living dashboard with simulated data from all 3,321 communes
demo: $(BIN)/.installed
	$(BIN)/chiso demo --host $(HOST) --port $(PORT)

## The performance benchmark (PostgreSQL); prints a table and writes bench-results/
bench: $(BIN)/.installed
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
