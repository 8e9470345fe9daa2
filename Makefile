# The two commands a user types on a fresh machine:
#   make run    set everything up, fetch and build the store, and show its summary
#   make test   set everything up and run every check (ruff + pytest)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup fetch build bench bench-scale clean

run: build
	$(BIN)/kpmap info

test: setup fetch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

fetch: setup
	$(BIN)/kpmap fetch

build: fetch
	$(BIN)/kpmap build

clean:
	rm -rf $(VENV) data/store data/upstream

bench: setup fetch
	$(BIN)/python -m tests.bench_store

bench-scale: setup fetch
	$(BIN)/python -m tests.bench_scale
