# Thin wrappers; everything a fresh machine needs is installed by `make setup`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := 1
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export GIT_PYTHON_REFRESH := quiet

.PHONY: setup run test test-all lint format data viz viz-build mlflow-ui bench sweep-tybalt clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	@touch $(STAMP)

data: setup
	$(BIN)/python -m genevae.datasets.fetch --raw-dir data/01_raw

run: setup data
	$(BIN)/kedro run --pipelines data_processing
	$(BIN)/kedro run --pipelines vega --env demo

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

test: setup lint
	$(BIN)/pytest

test-all: setup lint
	$(BIN)/pytest -m ""

# The UIs run in their own process group: Ctrl-C or `kill` stops the server and its workers.
viz: setup
	$(BIN)/python -m genevae.ui viz --host 127.0.0.1 --port 4141

viz-build: setup
	$(BIN)/kedro viz build

mlflow-ui: setup
	$(BIN)/python -m genevae.ui mlflow --host 127.0.0.1 --port 5000

bench: setup
	$(BIN)/python -m benchmarks.run_all

N_TRIALS ?= 4
N_WORKERS ?= 2
sweep-tybalt: setup data
	$(BIN)/python -m genevae.sweep tybalt --n-trials $(N_TRIALS) --n-workers $(N_WORKERS)

clean:
	rm -rf .viz build .pytest_cache .ruff_cache
