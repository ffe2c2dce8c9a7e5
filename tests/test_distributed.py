"""Many processes on PyTorch's own engine: the dump and a training run under torchrun with two
ranks (gloo, on the CPU) give what one process gives, and the ledger counts each image once."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.models import create
from tests.pipeline_copy import REPO, built_teacher, edit_params, env, read_ledger, run_stage, set_params, stage_argv
from tests.test_faults import augmented_sets, prepared_pool

# scripts/device_check.sh sets cuda on a machine with two or more GPUs (NCCL); gloo on the CPU here
DEVICE = os.environ.get("DERD_TEST_DEVICE", "cpu")

pytestmark = pytest.mark.e2e
BUDGET = 300


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = prepared_pool(tmp_path_factory.mktemp("ddp") / "repo", 1000, BUDGET)
    torch.manual_seed(0)
    built_teacher(root / "models/teacher", create("teacher_cnn", 32))
    augmented_sets(root, BUDGET, seeds=(0, 1))
    set_params(
        root,
        {
            "budgets": [BUDGET],
            "seeds": [0, 1],  # one process: side by side; under torchrun: one after another
            "levers": {"budgets": [BUDGET]},
            "data": {"pool_limit": 1000},
            "sample": {"val_size": 100, "val_queries": 20, "features": "small"},
            "method": {"derd": {"pool": "none"}},
            "teacher": {"dim": 32},
            "students": {"small": {"arch": "student_cnn", "dim": 16}},
            "student": "small",
            "sizes": ["small"],
            "queries": {"call_batch": 64},
            "train": {"steps": 10, "batch_size": 64, "virtual_per_batch": 32, "log_every": 1},
            "runtime": {
                "threads": 1,
                "checkpoint_every": 1000,
                "device": DEVICE,
                "precision": "fp32",
                "compile": "false",
            },
        },
    )
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    return root


def run(repo, name, processes):
    edit_params(repo, {"runtime": {"processes": processes}})
    module, args = stage_argv(repo, name)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=repo, env=env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def run_here(repo, name):
    """One process: the stage in this process (``run_stage``), as ``run(repo, name, 1)`` but without a
    Python start-up."""
    edit_params(repo, {"runtime": {"processes": 1}})
    return run_stage(repo, name)


def copy(src, dst):
    shutil.copytree(src, dst)
    edit_params(dst, {"queries": {"store": str(dst / "store")}})
    return dst


def test_a_dump_on_two_ranks_gives_the_same_descriptors_and_asks_each_image_once(inputs, tmp_path):
    one, two = copy(inputs, tmp_path / "one"), copy(inputs, tmp_path / "two")
    run_here(one, "dump")
    out = run(two, "dump", 2)
    assert "on 2 ranks" in json.loads((two / "metrics/queries.json").read_text())["teacher"]
    dumped = "data/teacher/train_descriptors.npz"
    with np.load(one / dumped) as a, np.load(two / dumped) as b:
        assert np.array_equal(a["indices"], b["indices"])
        assert np.allclose(a["descriptors"], b["descriptors"], atol=1e-6)
    calls = [c for ledger in (two / "store").glob("*/ledger.jsonl") for c in read_ledger(ledger)]
    assert [c["images"] for c in calls] == [64, 64, 64, 64, 44] and {c["outcome"] for c in calls} == {"answered"}
    assert "300 sent this run" in out.stdout


@pytest.mark.trains
def test_training_on_two_ranks_matches_one_process_with_the_whole_batch(inputs, tmp_path):
    one, two = copy(inputs, tmp_path / "one"), copy(inputs, tmp_path / "two")
    run_here(one, f"train@{BUDGET}-derd")
    run(two, f"train@{BUDGET}-derd", 2)
    for seed in (0, 1):
        a = torch.load(one / f"models/students/{BUDGET}-derd-small/{BUDGET}-derd-small-{seed}.pt", weights_only=True)
        b = torch.load(two / f"models/students/{BUDGET}-derd-small/{BUDGET}-derd-small-{seed}.pt", weights_only=True)
        assert (a["students_at_once"], b["students_at_once"]) == (2, 1)
        # the same model up to float rounding (sums over ranks run in another order)
        assert len(a["curve"]) == 10 and np.allclose([v for _, v in a["curve"]], [v for _, v in b["curve"]], rtol=1e-4)
        for key, value in a["state_dict"].items():  # weights, and BatchNorm statistics over every rank's rows
            assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=5e-4), key  # Adam: rounding
        assert not torch.equal(
            a["state_dict"]["features.0.0.weight"], create("student_cnn", 16).state_dict()["features.0.0.weight"]
        )  # it did train


@pytest.mark.trains
def test_one_step_s_gradients_on_two_ranks_equal_one_process_s_on_the_whole_batch(tmp_path):
    """The gradient math itself (Adam would hide a gradient scaled by the number of ranks): rows split,
    descriptors gathered with their gradients, BatchNorm over every rank, DDP's averaging."""
    from tests import ddp_gradients as step

    out = tmp_path / "two.pt"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*torchrun, str(REPO / "tests/ddp_gradients.py"), str(out)],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = torch.load(out, weights_only=True)
    net = step.model()
    loss = step.loss_of(net, *step.batch())
    loss.backward()
    assert torch.allclose(two["loss"], loss.detach(), atol=1e-6)
    for name, p in net.named_parameters():
        assert torch.allclose(two["grads"][name], p.grad, rtol=1e-4, atol=1e-6), name
    for name, b in net.named_buffers():  # running statistics over the whole batch
        assert torch.allclose(two["buffers"][name].float(), b.float(), rtol=1e-4, atol=1e-6), name
