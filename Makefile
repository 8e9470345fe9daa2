# The two commands a user types on a fresh machine:
#   make run    set everything up, fetch and build the store if needed, and serve the map at
#               http://127.0.0.1:8000/ (gunicorn)
#   make test   set everything up and run every check (ruff, mypy, pytest: browser tests included)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ASSETS := app/static/vendor/VERSIONS.json
STORE_MANIFEST := data/store/manifest.json
BIND ?= 127.0.0.1:8000

.PHONY: run test setup assets fetch build bench bench-scale bench-map hardening clean

# gunicorn_conf.py: gevent workers (app/worker.py; slow clients hold a greenlet, not a thread),
# --preload (the workers share the store's memory), timeouts; docs/serving.md says why.
run: setup assets fetch $(STORE_MANIFEST)
	$(BIN)/gunicorn --config gunicorn_conf.py --bind $(BIND) wsgi:app

test: setup assets fetch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
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

# Rebuilt when the authored data or the code that writes the store changes (a store keeps its
# imports across a rebuild): the build, the importers, the store's format, and the shared modules
# they read (tests/test_layout.py checks this list) — never the tiles or the web app.
# `kpmap build` forces it.
STORE_INPUTS := $(wildcard data/*.toml data/*.csv data/events/*.csv) \
	$(wildcard geo/build/*.py geo/importers/*.py geo/store/*.py) \
	geo/border.py geo/citations.py geo/crs.py geo/dates.py geo/districts.py geo/errors.py \
	geo/fsutil.py geo/helper.py \
	geo/geojson.py geo/geonames.py geo/licences.py geo/paths.py geo/vocab.py \
	geo/downloads.py geo/export.py geo/query.py geo/stretches.py

$(STORE_MANIFEST): $(STAMP) $(STORE_INPUTS)
	$(BIN)/kpmap build

build: fetch
	$(BIN)/kpmap build

bench: setup fetch
	$(BIN)/python -m benchmarks.bench_store

bench-scale: setup fetch
	$(BIN)/python -m benchmarks.bench_scale

clean:
	rm -rf $(VENV) data/store data/.store.versions data/.store.lock data/upstream node_modules app/static/vendor

bench-map: setup assets fetch
	$(BIN)/python -m benchmarks.bench_map

# schemathesis over /ogc/api (every check, stateful links followed, thousands of requests), then
# 200 slow readers and 200 slowloris connections against the server as `make run` starts it.
hardening: setup assets fetch $(STORE_MANIFEST)
	$(BIN)/python -m benchmarks.hardening
