#!/usr/bin/env bash
# Idempotent set-up shared by `make run` and `make test`: the default dataset, a virtual
# environment with the pinned dependencies, DVC's config. Safe to run any number of times.
#   setup.sh        what a run needs (make run)
#   setup.sh unit   and what the tests need but a browser (make test-unit)
#   setup.sh test   and Debian's Chromium (make test)
set -euo pipefail
cd "$(dirname "$0")/.."

export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
DEBIAN_DATA=/usr/share/datasets/fashion-mnist
PYTHON=${PYTHON:-python3}

# 1. Default dataset: Debian's package where we can install it; otherwise the fetch stage
#    downloads the official files and verifies their checksums.
if [ ! -f "$DEBIAN_DATA/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's dataset-fashion-mnist"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
      || echo "setup: apt-get failed; the fetch stage will download Fashion-MNIST instead"
  else
    echo "setup: no root/apt; the fetch stage will download Fashion-MNIST and verify it"
  fi
fi

# 1b. `setup.sh test`: Debian's Chromium, for the test that opens the MLflow UI in a browser
#     (or one line saying what to install, where set-up may not install it)
if [ "${1:-}" = test ]; then ./scripts/chromium.sh; fi

# 2. Virtual environment with the pinned dependencies (reinstalled only when pyproject.toml changes).
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv 2>/dev/null || {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$PYTHON" -m venv .venv
    else
      echo "setup: '$PYTHON -m venv' failed; install your distribution's python3-venv package" >&2; exit 1
    fi
  }
fi
# DERD_GPU=1: faiss-gpu (exact search on the GPU) in place of faiss-cpu
GPU=${DERD_GPU:-0}
stamp=".venv/.installed-$( (cat pyproject.toml; echo "gpu=$GPU bytecode=2") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing dependencies into .venv (first time: a few minutes)"
  # uv installs from its cache by hard links (seconds; pip unpacks torch's 5 GB again for every clone);
  # pip stays the fallback where uv cannot run
  # uv does not read pip's configuration: a package index given to pip by environment is passed on;
  # DERD_NO_UV=1 installs with pip alone (e.g. an index configured in pip.conf)
  if [ -n "${PIP_INDEX_URL:-}" ]; then export UV_INDEX_URL=${UV_INDEX_URL:-$PIP_INDEX_URL}; fi
  if [ -n "${PIP_EXTRA_INDEX_URL:-}" ]; then export UV_EXTRA_INDEX_URL=${UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}; fi
  if [ "${DERD_NO_UV:-0}" = 1 ]; then UV=(false); else UV=(.venv/bin/python -m uv); fi
  .venv/bin/python -m pip install -q --upgrade pip uv==0.13.9 || true
  # the pinned dependencies only: stages run from the repository root, nothing needs building
  GPU=$GPU .venv/bin/python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = p["dependencies"] + p["optional-dependencies"]["test"]
if os.environ["GPU"] == "1":
    deps = [d for d in deps if not d.startswith("faiss-cpu")] + p["optional-dependencies"]["gpu"]
print("\n".join(deps))' > .venv/requirements.txt
  [ "$GPU" = 1 ] && .venv/bin/python -m pip uninstall -q -y faiss-cpu  # both provide `faiss`
  "${UV[@]}" pip install --python .venv/bin/python -q -r .venv/requirements.txt \
    || .venv/bin/python -m pip install -q -r .venv/requirements.txt
  rm -f .venv/.installed-* .venv/.compiled-* && touch "$stamp"
fi

# 2b. Bytecode. Every stage is a new process, and where PYTHONDONTWRITEBYTECODE is set (common in
#     containers) nothing else ever writes the .pyc files, so each of a run's 34 stage processes would
#     compile torch's sources again (4.8 s, not 2.2 s, per import on the reference machine); uv writes
#     none. A run needs only what its stages import: importing that once with bytecode writing on
#     compiles it (about 20 s); the tests import more (scikit-learn, scikit-image, every code path), so
#     `setup.sh unit` and `setup.sh test` compile the whole environment (about 36 s; -x: torch ships a
#     test helper in Python 3.12 syntax, which no 3.11 can compile and nothing imports).
RUN_IMPORTS="click faiss filelock matplotlib.pyplot mlflow mlflow.pytorch mlflow.pyfunc numpy onnxruntime pandas PIL.Image
pydantic requests torch torch.distributed torch.nn.parallel torch.utils.flop_counter torchvision tqdm yaml dvc.cli dvc.repo
dvc.repo.reproduce"
imports_stamp=".venv/.compiled-imports-$(echo "$RUN_IMPORTS" | sha256sum | cut -c1-16)"
if [ ! -f "$imports_stamp" ]; then
  # each module on its own: one that fails to import is named, and the others are still compiled
  if PYTHONDONTWRITEBYTECODE= RUN_IMPORTS="$RUN_IMPORTS" .venv/bin/python -c '
import importlib, os, sys
failed = []
for name in os.environ["RUN_IMPORTS"].split():
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name} ({type(exc).__name__}: {exc})")
if failed:
    sys.exit("setup: could not import " + "; ".join(failed))' >/dev/null; then
    rm -f .venv/.compiled-imports* && touch "$imports_stamp"
  else
    echo "setup: the run still works, each stage process starting slower; set-up tries again next time" >&2
  fi
fi
if [ -n "${1:-}" ] && [ ! -f .venv/.compiled-all ]; then
  .venv/bin/python -m compileall -q -j 0 --invalidation-mode timestamp -x 'torch/testing/_internal/py31[2-9]_' \
    .venv/lib/python3*/site-packages >/dev/null \
    || echo "setup: compiling the environment's bytecode failed; it still works, each process starting slower" >&2
  touch .venv/.compiled-all
fi

# 3. The `derd` command (the project itself, editable: no copy to keep in sync) and, for the tests
#    (`setup.sh test|unit`) of teachers behind the Open Inference Protocol, MLServer in a folder of its own (its pins clash
#    with MLflow's; only the MLServer process puts that folder first on its path).
if [ ! -x .venv/bin/derd ]; then
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . || .venv/bin/python -m pip install -q --no-deps -e .
fi
mlserver_stamp=".venv/mlserver/.installed-$(sha256sum tests/mlserver-requirements.txt | cut -c1-16)"
if [ -n "${1:-}" ] && [ ! -f "$mlserver_stamp" ]; then
  echo "setup: installing MLServer for the tests into .venv/mlserver"
  rm -rf .venv/mlserver
  grep -v '^#' tests/mlserver-requirements.txt | .venv/bin/python -m pip install -q --no-deps --target .venv/mlserver -r /dev/stdin
  touch "$mlserver_stamp"
fi

# 4. DVC: a repository of its own if this is not a git checkout, no analytics.
if [ ! -d .dvc ]; then
  if git rev-parse --git-dir >/dev/null 2>&1; then .venv/bin/dvc init -q; else .venv/bin/dvc init -q --no-scm; fi
fi
.venv/bin/dvc config core.analytics false
