# The two commands a user types on a fresh machine:
#   make run    set everything up, fetch and build the store if needed, and serve the map at
#               http://127.0.0.1:8000/ (gunicorn)
#   make test   set everything up and run every check (ruff + pytest, browser tests included)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ASSETS := app/static/vendor/VERSIONS.json
STORE_MANIFEST := data/store/manifest.json
BIND ?= 127.0.0.1:8000

.PHONY: run test setup assets fetch build bench bench-scale bench-map hardening clean

# gunicorn_conf.py: gevent workers (slow clients hold a greenlet, not a thread), --preload (the
# workers share the store's memory), timeouts; the README's "Serving it" says why.
run: setup assets fetch $(STORE_MANIFEST)
	$(BIN)/gunicorn --config gunicorn_conf.py --bind $(BIND) 'app:create_app()'

test: setup assets fetch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Front-end assets: pinned npm packages, copied into the git-ignored app/static/vendor/.
assets: $(ASSETS)

$(ASSETS): package.json package-lock.json $(STAMP)
	npm ci --ignore-scripts --no-audit --no-fund
	$(BIN)/python -m app.install_assets

fetch: setup
	$(BIN)/kpmap fetch

# Rebuilt when the authored data or the code changes (a store keeps its imports across a
# rebuild); `kpmap build` forces it.
$(STORE_MANIFEST): $(STAMP) $(wildcard data/*.toml data/*.csv data/events/*.csv geo/*.py geo/importers/*.py)
	$(BIN)/kpmap build

build: fetch
	$(BIN)/kpmap build

bench: setup fetch
	$(BIN)/python -m benchmarks.bench_store

bench-scale: setup fetch
	$(BIN)/python -m benchmarks.bench_scale

clean:
	rm -rf $(VENV) data/store data/upstream node_modules app/static/vendor

bench-map: setup assets fetch
	$(BIN)/python -m benchmarks.bench_map

# schemathesis over /ogc/api (every check, stateful links followed, thousands of requests), then
# 200 slow readers and 200 slowloris connections against the server as `make run` starts it.
hardening: setup assets fetch $(STORE_MANIFEST)
	$(BIN)/python -m benchmarks.hardening
