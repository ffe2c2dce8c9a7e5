"""Fault injection: killed dumps and trainings resume without waste, bad input gets a clear error,
and nothing already computed is lost."""

import errno
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.checkpoint import FileCheckpointer
from pipeline.distill.interpolation import normalize_rows, sample_triples
from pipeline.distill.sampling import nested_subset
from pipeline.distill.train import train_student
from pipeline.models import create
from tests.pipeline_copy import (
    REPO,
    built_teacher,
    edit_params,
    env,
    read_ledger,
    repo_params,
    run_stage,
    set_params,
    stage_argv,
)

DUMP_BUDGET = 2000


def stage_cmd(name, repo=REPO):
    """The stage's command as DVC would run it in ``repo`` (its dvc.yaml and params.yaml)."""
    module, args = stage_argv(repo, name)
    return [sys.executable, "-m", module, *args]


def stage_env():
    e = env()
    e["PYTHONPATH"] = str(REPO)
    return e


def prepared_pool(root: Path, pool_size: int, budget: int) -> Path:
    """Random pool images with their names and meta file, and the nested subset of ``budget``."""
    rng = np.random.default_rng(0)
    (root / "data/prepared").mkdir(parents=True)
    np.savez(
        root / "data/prepared/pool.npz",
        images=rng.integers(0, 256, (pool_size, 28, 28), dtype=np.uint8),
        labels=rng.integers(0, 10, pool_size),
        names=np.array([f"train-{i:05d}" for i in range(pool_size)]),
    )
    (root / "data/prepared/pool.json").write_text(json.dumps({"pool_size": pool_size}))
    (root / "data/subsets").mkdir(parents=True)
    np.save(root / f"data/subsets/{budget}.npy", nested_subset(pool_size, budget, 0))
    return root


def augmented_sets(root: Path, budget: int, seeds=(0,), dim: int = 32) -> None:
    """What the augment stage writes for ``budget``: random unit teacher targets for its subset and,
    per seed, virtual triples over them (``data/augmented/<budget>/<seed>.npz``)."""
    from pipeline.distill.interpolation import interpolate
    from pipeline.grid import augmented_path

    targets = normalize_rows(np.random.default_rng(1).standard_normal((budget, dim))).astype(np.float32)
    (root / f"data/augmented/{budget}").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        triples = sample_triples(targets, 2.0, 0.4, "random", 5, np.random.default_rng(1 + seed))
        np.savez(
            augmented_path(root / f"data/augmented/{budget}", seed),
            real_targets=targets,
            i=triples.i,
            j=triples.j,
            lam=triples.lam,
            targets=interpolate(targets, triples),
        )


@pytest.fixture(scope="module")
def dump_inputs(tmp_path_factory):
    """A minimal prepared repo for the dump stage: random pool, nested subset, an untrained teacher."""
    root = prepared_pool(tmp_path_factory.mktemp("dump_inputs") / "repo", 5000, DUMP_BUDGET)
    torch.manual_seed(0)
    built_teacher(root / "models/teacher", create("teacher_cnn", 128))
    set_params(
        root,
        {
            "budgets": [DUMP_BUDGET],
            "levers": {"budgets": [DUMP_BUDGET]},
            "sample": {"val_size": 500, "val_queries": 50},
            "data": {"pool_limit": 5000},
            "runtime": {"threads": 1},
            "queries": {"call_batch": 32},
        },
    )
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")  # for run_stage
    return root


def private_copy(src: Path, dst: Path) -> Path:
    """A copy of the prepared repo with a teacher store of its own."""
    shutil.copytree(src, dst)
    edit_params(dst, {"queries": {"store": str(dst / "store")}})
    return dst


def ledger(root: Path) -> list[dict]:
    return [c for path in (root / "store").glob("*/ledger.jsonl") for c in read_ledger(path)]


def answered_indices(root: Path) -> list[np.ndarray]:
    return [np.load(p)["keys"] for p in sorted((root / "store").glob("*/answers/*.npz"))]


def test_dump_killed_repeatedly_resumes_to_identical_descriptors(dump_inputs, tmp_path):
    reference = private_copy(dump_inputs, tmp_path / "reference")
    run_stage(reference, "dump")  # uninterrupted, in this process
    with np.load(reference / "data/teacher/train_descriptors.npz") as z:
        want = z["descriptors"]
    assert sum(c["images"] for c in ledger(reference)) == DUMP_BUDGET

    work = private_copy(dump_inputs, tmp_path / "killed")
    # a kill during a call loses that call (it counts); resending it needs consent: allow 4 calls of 32
    edit_params(work, {"queries": {"extra_calls": 4 * 32}})
    rnd = random.Random(1234)
    for attempt in range(4):
        proc = subprocess.Popen(
            stage_cmd("dump"), cwd=work, env=stage_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if attempt == 0:
            time.sleep(rnd.uniform(0.3, 1.5))  # during start-up, before any query
        else:  # after 1-3 more answered calls, then a random moment: mid-call or between calls
            target = len(answered_indices(work)) + rnd.randint(1, 3)
            deadline = time.time() + 120
            while len(answered_indices(work)) < target and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(rnd.uniform(0.0, 0.15))
        assert proc.poll() is None, "the dump finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for keys in answered_indices(work):  # a file under a final name is always complete
            assert len(keys) > 0
    assert 0 < sum(len(k) for k in answered_indices(work)) < DUMP_BUDGET
    assert not (work / "data/teacher/train_descriptors.npz").exists()
    done = run_stage(work, "dump")  # resumed, in this process
    calls = ledger(work)
    lost = sum(c["images"] for c in calls if c["outcome"] == "lost")
    assert sum(c["images"] for c in calls if c["outcome"] == "answered") == DUMP_BUDGET  # no image answered twice
    assert sum(c["images"] for c in calls) == DUMP_BUDGET + lost  # every call made is counted, lost ones too
    keys = np.concatenate(answered_indices(work))
    assert len(np.unique(keys)) == len(keys) == DUMP_BUDGET
    with np.load(work / "data/teacher/train_descriptors.npz") as z:
        assert np.array_equal(z["descriptors"], want)
    assert f"{DUMP_BUDGET + lost} for these {DUMP_BUDGET} images" in done.output


def tiny_training(steps=30):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    targets = normalize_rows(rng.standard_normal((40, 16))).astype(np.float32)
    triples = sample_triples(targets, 2.0, 0.4, "random", 5, np.random.default_rng(1))
    from pipeline.distill.interpolation import interpolate
    from pipeline.distill.train import TrainingData

    p = repo_params(
        {
            "students": {"small": {"arch": "student_tiny", "dim": 8}},
            "train": {"steps": steps, "batch_size": 16, "virtual_per_batch": 8, "log_every": 5},
        }
    )
    return (
        TrainingData(images, targets, triples, interpolate(targets, triples)),
        p.size("small"),
        p.train,
        p.method["derd-plus"].model_copy(update={"flip_shift": False}),
    )


class Killed(Exception):
    pass


@pytest.mark.trains
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_training_resumes_bit_identical_after_a_kill(tmp_path, precision):
    """fp16 too: its gradient scaler's loss scale is part of the checkpoint."""
    args = tiny_training()
    cpu = torch.device("cpu")
    full = train_student(*args, seed=0, device=cpu, precision=precision)
    ck = FileCheckpointer(tmp_path / "ck.pt", key="k", every=10)

    def die_at_step_17(step, loss):
        if step == 17:
            raise Killed

    with pytest.raises(Killed):
        train_student(*args, seed=0, device=cpu, on_step=die_at_step_17, checkpointer=ck, precision=precision)
    assert ck.load()["step"] == 10
    if precision == "fp16":  # the scale has moved off its start, so a resume without it would differ
        assert ck.load()["scaler"]["scale"] != torch.amp.GradScaler("cpu").get_scale()
    resumed = train_student(*args, seed=0, device=cpu, checkpointer=ck, precision=precision)
    assert resumed.resumed_from == 10
    assert resumed.curve == full.curve
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.trains
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_checkpoint_of_the_unfused_optimiser_is_started_over(tmp_path, monkeypatch, precision):
    """A checkpoint saved before the students' AdamW became fused matches the stage's key (same params
    and inputs) but not the kernel: it is started over, ending as an uninterrupted fused run. Loading
    it would switch kernels mid-run, and under float16 fail in the scaled step."""
    args = tiny_training()
    cpu = torch.device("cpu")
    full = train_student(*args, seed=0, device=cpu, precision=precision)
    ck = FileCheckpointer(tmp_path / "ck.pt", key="k", every=10)

    class Unfused(torch.optim.AdamW):
        def __init__(self, *a, fused=None, **k):
            super().__init__(*a, fused=None, **k)

    def die_at_step_17(step, loss):
        if step == 17:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(torch.optim, "AdamW", Unfused)
        with pytest.raises(Killed):
            train_student(*args, seed=0, device=cpu, on_step=die_at_step_17, checkpointer=ck, precision=precision)
    assert ck.load()["step"] == 10
    resumed = train_student(*args, seed=0, device=cpu, checkpointer=ck, precision=precision)
    assert resumed.resumed_from == 0
    assert resumed.curve == full.curve
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.trains
def test_stale_checkpoint_is_ignored(tmp_path):
    args = tiny_training(steps=20)
    ck = FileCheckpointer(tmp_path / "ck.pt", key="old", every=10)
    train_student(*args, seed=0, device=torch.device("cpu"), checkpointer=ck)
    fresh = train_student(
        *args,
        seed=0,
        device=torch.device("cpu"),
        checkpointer=FileCheckpointer(tmp_path / "ck.pt", key="new", every=10),
    )
    assert fresh.resumed_from == 0


@pytest.mark.trains
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_determinism_same_seed_same_everything(precision):
    """Same seed and params: identical weights and curve, so metrics equal to 1e-12 on the CPU, in
    float32 and under the bfloat16 autocast that `precision: auto` picks on CPUs with native bfloat16."""
    from pipeline.models.inference import describe
    from pipeline.retrieval.metrics import retrieval_metrics

    a1 = train_student(*tiny_training(), seed=3, device=torch.device("cpu"), precision=precision)
    a2 = train_student(*tiny_training(), seed=3, device=torch.device("cpu"), precision=precision)
    for x, y in zip(a1.model.state_dict().values(), a2.model.state_dict().values()):
        assert torch.equal(x, y)
    assert a1.curve == a2.curve
    rng = np.random.default_rng(5)
    queries, db = rng.integers(0, 256, (10, 28, 28), np.uint8), rng.integers(0, 256, (50, 28, 28), np.uint8)
    gnd = [{"easy": np.arange(q, 50, 10), "hard": [], "junk": []} for q in range(10)]
    m1, m2 = (
        retrieval_metrics(describe(a.model, queries, 64, "cpu"), describe(a.model, db, 64, "cpu"), gnd)
        for a in (a1, a2)
    )
    assert m1.keys() == m2.keys() and all(abs(m1[k] - m2[k]) <= 1e-12 for k in m1)
    other = train_student(*tiny_training(), seed=4, device=torch.device("cpu"), precision=precision)
    assert not torch.equal(next(iter(other.model.state_dict().values())), next(iter(a1.model.state_dict().values())))


@pytest.fixture
def fresh_cpu_probe():
    """The CPU probe is cached per process: cleared before and after, whatever the test's outcome."""
    from pipeline import accel

    accel.cpu_has_bf16_units.cache_clear()
    yield accel
    accel.cpu_has_bf16_units.cache_clear()


def test_auto_precision_is_bfloat16_exactly_where_the_cpu_has_native_bfloat16(fresh_cpu_probe, monkeypatch):
    accel = fresh_cpu_probe
    cpu = torch.device("cpu")
    cases = (
        ("fpu avx512f avx512_bf16 amx_bf16 amx_tile", True, "bf16"),
        ("fpu avx512f avx512_bf16 amx_bf16 amx_tile", False, "bf16"),  # AMX refused (some VMs): AVX512-BF16 stays
        ("fpu avx512f amx_bf16 amx_tile", True, "bf16"),
        ("fpu avx512f amx_bf16 amx_tile", False, "fp32"),  # the kernel refuses AMX and nothing else is native
        ("fpu avx512f avx512bw avx512_vnni avx512_bf16", False, "bf16"),  # AMD Zen 4: no AMX
        ("fpu avx2 avx512f avx512bw", True, "fp32"),  # AVX-512 without its BF16 extension emulates it
    )
    for flags, usable, expected in cases:
        accel.cpu_has_bf16_units.cache_clear()
        monkeypatch.setattr(accel, "cpu_flags", lambda flags=flags: set(flags.split()))
        monkeypatch.setattr(torch._C._cpu, "_init_amx", lambda usable=usable: usable)
        assert accel.precision_of("auto", cpu) == expected, (flags, usable)
        assert accel.precision_of("fp32", cpu) == "fp32" and accel.precision_of("bf16", cpu) == "bf16"
    assert accel.precision_of("auto", torch.device("meta")) == "fp32"  # neither a CPU nor CUDA


def test_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    from pipeline import io as pio

    target = tmp_path / "out.npz"
    pio.save_npz_atomic(target, a=np.arange(3))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pio.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        pio.save_npz_atomic(target, a=np.arange(5))
    assert np.load(target)["a"].tolist() == [0, 1, 2]  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temp file left behind


def test_stage_reports_a_full_disk_in_one_line():
    import click
    from click.testing import CliRunner

    from stages.common import stage

    @click.command()
    @stage
    def writes():
        raise OSError(errno.ENOSPC, "No space left on device", "models/students/60.pt")

    result = CliRunner().invoke(writes)
    assert result.exit_code == 1
    assert "disk full while writing models/students/60.pt" in result.output and "free some space" in result.output


def test_malicious_checkpoint_is_refused(tmp_path):
    from pipeline.checkpoint import load_model

    class Evil:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(tmp_path / "pwned")],))

    torch.save({"arch": "student_tiny", "dim": 8, "state_dict": {}, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        load_model(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.fixture(scope="module")
def train_inputs(tmp_path_factory):
    """A minimal repo for the train stage: pool, subset, targets and virtual samples."""
    budget = 200
    root = prepared_pool(tmp_path_factory.mktemp("train_inputs"), 1000, budget)
    augmented_sets(root, budget)
    set_params(
        root,
        {
            "budgets": [budget],
            "seeds": [0],
            "levers": {"budgets": [budget]},
            "students": {"small": {"arch": "student_cnn", "dim": 16}},
            "student": "small",
            "sizes": ["small"],
            "sample": {"val_size": 100, "val_queries": 20, "features": "small"},
            "method": {"derd": {"pool": "none"}},
            "train": {"steps": 150, "batch_size": 64, "virtual_per_batch": 32},
            "data": {"pool_limit": 1000},
            "runtime": {"threads": 1, "checkpoint_every": 5},
        },
    )
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    return root


@pytest.mark.trains
def test_killed_training_stage_resumes_to_the_same_model(train_inputs, tmp_path):
    reference = private_copy(train_inputs, tmp_path / "reference")
    run_stage(reference, "train@200-derd")  # uninterrupted, in this process
    work = private_copy(train_inputs, tmp_path / "killed")
    ck = work / "checkpoints/train/200-derd-small-0.pt"
    proc = subprocess.Popen(
        stage_cmd("train@200-derd", work),
        cwd=work,
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not ck.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(7).uniform(0.0, 0.2))
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(ck, weights_only=True)["state"]["step"]
    assert 0 < step < 150 and not (work / "models/students/200-derd-small/200-derd-small-0.pt").exists()
    done = run_stage(work, "train@200-derd")  # resumed, in this process
    assert f"resuming training from step {step}" in done.output
    assert not ck.exists()  # cleared once the run is safely recorded
    want = torch.load(reference / "models/students/200-derd-small/200-derd-small-0.pt", weights_only=True)["state_dict"]
    got = torch.load(work / "models/students/200-derd-small/200-derd-small-0.pt", weights_only=True)["state_dict"]
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


@pytest.mark.trains
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_teacher_learns_under_low_precision(precision):
    """The autocast paths `precision: auto` takes for the teacher (bf16 on GPUs and CPUs with native bfloat16,
    fp16 with its gradient scaler on older GPUs; both run on the CPU here): finite losses that fall."""
    from pipeline import accel
    from pipeline.teacher.train import train_teacher

    cpu = torch.device("cpu")
    assert accel.grad_scaler(precision, cpu).is_enabled() == (precision == "fp16")
    assert not accel.grad_scaler("fp32", cpu).is_enabled()
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 32)
    images = (rng.integers(0, 60, (128, 28, 28)) + labels[:, None, None] * 45).astype(np.uint8)
    p = repo_params({"teacher": {"arch": "student_tiny", "dim": 16, "epochs": 3, "batch_size": 32}})
    _, history = train_teacher(images, labels, p.teacher, 0, cpu, precision=precision)
    assert all(np.isfinite(h.loss) for h in history) and history[-1].loss < history[0].loss
