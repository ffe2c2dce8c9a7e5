#!/usr/bin/env bash
# Every GPU path, in one short run (under 5 minutes on one GPU), printing its figures; for a machine
# with an accelerator (see README "Speed and scale"). From the repository root:
#
#   scripts/device_check.sh            # uses .venv if present, else python3
#
# 1. the stage benchmarks on the GPU (dump vs bare forward, training vs bare loop, search vs matmul);
# 2. training with mixed precision (bf16 autocast) and torch.compile, against float32: loss and time;
# 3. the dump and a training run under torchrun: 1 rank on the GPU, and N ranks (one per GPU when
#    there are several; else 2 ranks with gloo on the CPU), checked against one process;
# 4. exact search with faiss on the GPU (when faiss-gpu is installed: pip install faiss-gpu==1.15.1)
#    against the CPU's blocked search, and the R1M-size synthetic evaluation (200k x 2048 here).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true PYTHONUNBUFFERED=1 DERD_NO_PROGRESS=1
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", "gpus", torch.cuda.device_count())'

echo "== 1. stage benchmarks on the GPU"
"$PY" scripts/bench_stages.py --device cuda --repeats 3 || echo "FAILED: bench_stages"

echo "== 2. training: float32 vs bf16 autocast + torch.compile"
"$PY" - <<'PYCODE' || echo "FAILED: mixed precision"
import time, numpy as np, torch
from pipeline.distill.interpolation import interpolate, sample_triples
from pipeline.distill.train import TrainingData, train_student
from tests.pipeline_copy import repo_params
p = repo_params({"train": {"steps": 300, "log_every": 300}})
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (3000, 28, 28), dtype=np.uint8)
t = rng.standard_normal((3000, 128)).astype(np.float32); t /= np.linalg.norm(t, axis=1, keepdims=True)
tr = sample_triples(t, 4.0, 0.4, "random", 10, np.random.default_rng(1))
data = TrainingData(images, t, tr, interpolate(t, tr))
dev = torch.device("cuda")
for precision, compiled in (("fp32", False), ("bf16", False), ("bf16", True)):
    train_student(data, p.size(), p.train, p.method["derd-plus"], 0, dev, precision=precision, compiled=compiled)
    torch.cuda.synchronize(); t0 = time.perf_counter()
    r = train_student(data, p.size(), p.train, p.method["derd-plus"], 0, dev, precision=precision, compiled=compiled)
    torch.cuda.synchronize()
    print(f"{precision} compile={compiled}: 300 steps in {time.perf_counter() - t0:.2f} s, final loss {r.curve[-1][1]:.4f}")
PYCODE

echo "== 3. torchrun: the dump and training on 1 and N ranks against one process"
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
if [ "${GPUS:-0}" -ge 2 ]; then
  DERD_TEST_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider tests/test_distributed.py || echo "FAILED: distributed on GPUs"
else
  echo "one GPU: the N-rank check runs with gloo on the CPU"
  "$PY" -m pytest -q -p no:cacheprovider tests/test_distributed.py || echo "FAILED: distributed"
fi

echo "== 4. search: faiss on the GPU, and R1M-size synthetic evaluation"
"$PY" - <<'PYCODE' || echo "FAILED: faiss-gpu search"
import time, numpy as np
from pipeline.retrieval import search
if not search._gpu():
    print("faiss-gpu is not installed (pip install faiss-gpu==1.15.1): GPU search not checked")
else:
    rng = np.random.default_rng(0)
    db = rng.standard_normal((200_000, 512)).astype(np.float32); q = rng.standard_normal((1000, 512)).astype(np.float32)
    t0 = time.perf_counter(); gpu = search.rank_database(db, q, k=1000); t_gpu = time.perf_counter() - t0
    search._gpu = lambda: False
    t0 = time.perf_counter(); cpu = search.rank_database(db, q, k=1000); t_cpu = time.perf_counter() - t0
    print(f"top-1000 of 200k: GPU {t_gpu:.2f} s, CPU {t_cpu:.2f} s; top-100 agreement {search.recall_at(gpu, cpu, 100):.4f}")
PYCODE
"$PY" scripts/bench_r1m.py --n 200000 --dim 2048 --workdir /tmp/derd-r1m || echo "FAILED: R1M synthetic"
