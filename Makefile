# Quick start: `make run` (the whole pipeline) and `make test` (the test suite).
# Both set themselves up first (scripts/setup.sh), idempotently.
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

# The full comparison: every method, 3 seeds, as a DVC experiment (params.yaml keeps the choice;
# `git checkout params.yaml` returns to the default run, whose results DVC still has).
ALL_METHODS := [derd,derd-input,derd-noaug,rkd,rkd-virtual,regression,supervised,derd-plus]

.PHONY: run test setup bench ui compare tune preset clean-outputs

setup:
	@./scripts/setup.sh

run: setup
	dvc repro

test: setup
	python -m pytest -q

tune: setup
	python scripts/tune.py $(ARGS)

compare: setup
	dvc exp run -S 'methods=$(ALL_METHODS)' -S 'seeds=[0,1,2]'

bench: setup
	python scripts/bench_pipeline.py
	cd bench/repo && python $(CURDIR)/scripts/bench_efficiency.py

# a preset (presets/*.yaml, e.g. the paper-scale runs) as a DVC experiment: make preset PRESET=presets/paper-roxford5k.yaml
preset: setup
	python scripts/preset.py $(PRESET)

ui: setup
	mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" --host 127.0.0.1 --port 5000
