# Quick start: `make run` (the whole pipeline) and `make test` (the test suite).
# Both set themselves up first (scripts/setup.sh), idempotently.
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: run test setup bench ui clean-outputs

setup:
	@./scripts/setup.sh

run: setup
	dvc repro

test: setup
	python -m pytest -q

bench: setup
	python scripts/bench_pipeline.py

ui: setup
	mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" --host 127.0.0.1 --port 5000
