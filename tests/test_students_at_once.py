"""A training stage's seeds side by side on the CPU (pipeline/concurrency.py): the same students as one
after another, no student left training when the stage is killed, and one failure stopping the rest."""

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from pipeline.concurrency import plan
from tests.pipeline_copy import REPO, edit_params, set_params
from tests.test_faults import augmented_sets, prepared_pool, stage_cmd, stage_env

BUDGET = 200
STAGE = f"train@{BUDGET}-derd"
FOLDER = f"models/students/{BUDGET}-derd-small"


def test_the_plan_shares_the_cores_between_the_seeds_only_on_a_cpu_in_one_process():
    assert plan(3, "cpu", 1, 0, 0, 2) == (3, 1)  # this machine: three students, one thread each
    assert plan(3, "cpu", 1, 0, 0, 16) == (3, 5)
    assert plan(3, "cpu", 1, 2, 0, 16) == (2, 8)  # runtime.students_at_once caps them
    assert plan(3, "cpu", 1, 0, 6, 16) == (3, 2)  # runtime.threads are shared too
    assert plan(3, "cpu", 1, 1, 0, 16) == (1, 0)  # one after another, torch's default threads
    assert plan(1, "cpu", 1, 0, 0, 16) == (1, 0)
    assert plan(3, "cuda", 1, 0, 0, 16) == (1, 0)  # a GPU trains them in turn
    assert plan(3, "cpu", 2, 0, 0, 16) == (1, 0)  # under torchrun the ranks share each student


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """A minimal repo for the train stage with two seeds, every student on one thread."""
    root = prepared_pool(tmp_path_factory.mktemp("at_once") / "repo", 1000, BUDGET)
    augmented_sets(root, BUDGET, seeds=(0, 1))
    set_params(
        root,
        {
            "budgets": [BUDGET],
            "seeds": [0, 1],
            "levers": {"budgets": [BUDGET]},
            "students": {"small": {"arch": "student_cnn", "dim": 16}},
            "student": "small",
            "sizes": ["small"],
            "sample": {"val_size": 100, "val_queries": 20, "features": "small"},
            "method": {"derd": {"pool": "none"}},
            "train": {"steps": 60, "batch_size": 64, "virtual_per_batch": 32},
            "data": {"pool_limit": 1000},
            "runtime": {"threads": 1, "checkpoint_every": 5, "precision": "fp32"},
        },
    )
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    return root


def copy_of(src: Path, dst: Path, at_once: int) -> Path:
    import shutil

    shutil.copytree(src, dst)
    edit_params(dst, {"runtime": {"students_at_once": at_once}})
    return dst


def run(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        stage_cmd(STAGE, repo), cwd=repo, env=stage_env(), capture_output=True, text=True, timeout=600
    )


def weights(repo: Path, seed: int) -> dict:
    return torch.load(repo / FOLDER / f"{BUDGET}-derd-small-{seed}.pt", weights_only=True)


def same_weights(a: dict, b: dict) -> bool:
    return a["state_dict"].keys() == b["state_dict"].keys() and all(
        torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]
    )


@pytest.fixture(scope="module")
def one_after_another(two_seeds, tmp_path_factory):
    repo = copy_of(two_seeds, tmp_path_factory.mktemp("in_turn") / "repo", 1)
    done = run(repo)
    assert done.returncode == 0, done.stderr
    assert "at once" not in done.stdout
    return repo


@pytest.mark.trains
def test_seeds_side_by_side_train_the_students_each_would_alone(two_seeds, one_after_another, tmp_path):
    repo = copy_of(two_seeds, tmp_path / "repo", 0)
    done = run(repo)
    assert done.returncode == 0, done.stderr
    assert f"training {BUDGET}-derd-small-0, {BUDGET}-derd-small-1: 2 at once, one process and 1 thread(s)" in (
        done.stdout
    )
    for seed in (0, 1):
        side_by_side, alone = weights(repo, seed), weights(one_after_another, seed)
        assert same_weights(side_by_side, alone) and side_by_side["curve"] == alone["curve"]
        assert side_by_side["students_at_once"] == 2 and alone["students_at_once"] == 1
    assert not same_weights(weights(repo, 0), weights(repo, 1))  # two seeds, two students
    assert not list((repo / "checkpoints/train").glob("*.pt"))  # cleared once every student is saved


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.trains
def test_a_killed_stage_leaves_no_student_training_and_resumes_both(two_seeds, one_after_another, tmp_path):
    repo = copy_of(two_seeds, tmp_path / "repo", 0)
    checkpoints = [repo / f"checkpoints/train/{BUDGET}-derd-small-{seed}.pt" for seed in (0, 1)]
    proc = subprocess.Popen(
        stage_cmd(STAGE, repo), cwd=repo, env=stage_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not all(c.exists() for c in checkpoints) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    students = children_of(proc.pid)
    assert proc.poll() is None and len(students) == 2, "the students finished before they could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(alive(pid) for pid in students) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in students), "a student kept training after its stage was killed"
    steps = [torch.load(c, weights_only=True)["state"]["step"] for c in checkpoints]
    assert all(0 < s < 60 for s in steps)
    done = run(repo)
    assert done.returncode == 0, done.stderr
    for seed, step in zip((0, 1), steps):
        assert f"resuming training from step {step} (checkpoints/train/{BUDGET}-derd-small-{seed}.pt)" in done.stdout
        assert same_weights(weights(repo, seed), weights(one_after_another, seed))


@pytest.mark.trains
def test_one_failing_student_stops_the_other_and_says_which(two_seeds, tmp_path):
    repo = copy_of(two_seeds, tmp_path / "repo", 0)
    (repo / f"data/augmented/{BUDGET}/1.npz").write_bytes(b"not an npz file")
    done = run(repo)
    assert done.returncode == 1
    assert f"error [train]: student {BUDGET}-derd-small-1 (exit status 1; its error is above) failed" in done.stderr
    assert f"stopped: student {BUDGET}-derd-small-0" in done.stderr and "Traceback" in done.stderr  # the student's own
    assert not (repo / FOLDER / f"{BUDGET}-derd-small-0.pt").exists()
