# Quick start: `make run` (the whole pipeline) and `make test` (the test suite).
# Both set themselves up first (scripts/setup.sh), idempotently.
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

# The full comparison: every method (with the recommended one, at every size), 3 seeds, as a DVC experiment (params.yaml keeps the choice;
# `git checkout params.yaml` returns to the default run, whose results DVC still has).
ALL_METHODS := [derd,derd-input,derd-noaug,rkd,rkd-virtual,regression,supervised,supervised-nsm]


.PHONY: run test test-unit setup bench bench-r1m bench-scale ui compare tune preset second-set

setup:
	@./scripts/setup.sh

run: setup
	dvc repro

test:
	@./scripts/setup.sh test
	ruff check .
	ruff format --check .
	python -m pytest -q -n 2 --dist loadgroup

# the edit-test loop: everything but the tests that run the real pipeline (the e2e marker; the browser
# test is one of them, so this needs no Chromium)
test-unit:
	@./scripts/setup.sh unit
	ruff check .
	ruff format --check .
	python -m pytest -q -m "not e2e"

tune: setup
	python scripts/tune.py $(ARGS)

compare: setup
	dvc exp run -S 'methods=$(ALL_METHODS)' -S 'seeds=[0,1,2]'

# the defaults, untouched, on a second image set (scikit-learn's digits as a folder dataset)
second-set: setup
	python scripts/second_set.py

# a cold `dvc repro` stage by stage (time, peak memory), each stage against its bare baseline, and
# the student/teacher throughput, side by side in one process (the teacher's call timings apart)
bench: setup
	rm -rf bench/repo bench/teacher-store bench/pipeline.json
	python scripts/bench_pipeline.py
	python scripts/bench_stages.py
	python scripts/bench_startup.py
	python scripts/bench_precision.py
	cd bench/repo && python $(CURDIR)/scripts/bench_efficiency.py

# the evaluation at R1M size: a million synthetic 2048-d descriptors (4 GiB on disk under bench/)
bench-r1m: setup
	python scripts/bench_r1m.py

# costs as the pool grows: sample, the answer store and gate, augment and a training step on synthetic pools
# of 10^4, 10^5 and 10^6 images (each figure in a fresh process), against the targets: reports/bench/scale.{md,csv,png}
bench-scale: setup
	python scripts/bench_scale.py $(ARGS)

# a preset (presets/*.yaml, e.g. the paper-scale runs) as a DVC experiment: make preset PRESET=presets/paper-roxford5k.yaml
preset: setup
	python scripts/preset.py $(PRESET)

ui: setup
	derd ui --port 5000
