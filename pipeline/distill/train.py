"""Train a student to reproduce the teacher's similarity rankings on real + virtual samples.

A batch is built around virtual samples: draw ``virtual_per_batch`` triples, put both endpoints of
each in the batch, fill up with other real samples. The joint set J = real + virtual then has
teacher targets for every member (stored, never queried) and student representations computed
from the batch alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.data.tensors import to_input
from pipeline.distill.interpolation import Triples
from pipeline.distill.losses import listwise_ranking_loss
from pipeline.models import create
from pipeline.params import StudentParams, TrainParams


@dataclass(frozen=True)
class Batch:
    real: np.ndarray      # subset positions of the real samples
    virtual: np.ndarray   # indices into the triples
    vi: np.ndarray        # positions of each virtual sample's endpoints within ``real``
    vj: np.ndarray


def make_batch(n: int, triples: Triples, batch_size: int, virtual_per_batch: int,
               rng: np.random.Generator) -> Batch:
    """Real samples always include both endpoints of every virtual sample in the batch."""
    m = min(virtual_per_batch, len(triples), max(batch_size // 2, 1)) if len(triples) else 0
    virtual = rng.choice(len(triples), size=m, replace=False) if m else np.zeros(0, np.int64)
    endpoints = np.unique(np.concatenate([triples.i[virtual], triples.j[virtual]])) if m else np.zeros(0, np.int64)
    fill = max(min(batch_size, n) - len(endpoints), 0)
    others = np.setdiff1d(np.arange(n), endpoints, assume_unique=True)
    real = np.concatenate([endpoints, rng.choice(others, size=min(fill, len(others)), replace=False)])
    pos = {int(r): k for k, r in enumerate(real)}
    vi = np.array([pos[int(x)] for x in triples.i[virtual]], dtype=np.int64)
    vj = np.array([pos[int(x)] for x in triples.j[virtual]], dtype=np.int64)
    return Batch(real.astype(np.int64), virtual.astype(np.int64), vi, vj)


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


class Checkpointer(Protocol):
    """Where periodic training state goes, so that a killed training resumes instead of restarting."""

    every: int

    def load(self) -> dict | None: ...

    def save(self, state: dict) -> None: ...


@dataclass
class TrainResult:
    model: torch.nn.Module
    curve: list[tuple[int, float]]  # (step, mean loss over the last ``log_every`` steps)
    resumed_from: int               # 0 for a fresh start


def train_student(
    images: np.ndarray,
    targets: np.ndarray,
    triples: Triples,
    virtual_targets: np.ndarray,
    sp: StudentParams,
    tp: TrainParams,
    seed: int,
    device: torch.device,
    on_step: Callable[[int, float], None] | None = None,
    checkpointer: Checkpointer | None = None,
) -> TrainResult:
    """``images`` (B, H, W) uint8 and ``targets`` (B, d_T) are the subset; ``triples`` index into it.

    With a ``checkpointer``, the full state (weights, optimiser, schedule, both RNGs, curve) is
    saved every ``checkpointer.every`` steps; a resumed run ends bit-identical to an uninterrupted one.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if tp.space == "none":
        triples = Triples(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    model = create(sp.arch, sp.dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
    warmup = max(tp.steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, tp.steps, warmup))
    curve: list[tuple[int, float]] = []
    window: list[float] = []
    start = 0
    state = checkpointer.load() if checkpointer else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        curve, window, start = [tuple(c) for c in state["curve"]], list(state["window"]), state["step"]
    x_all = to_input(images, device)
    t_all = torch.as_tensor(targets, dtype=torch.float32, device=device)
    tv_all = torch.as_tensor(virtual_targets, dtype=torch.float32, device=device)
    lam_all = torch.as_tensor(triples.lam, dtype=torch.float32, device=device)
    model.train()
    for step in range(start, tp.steps):
        b = make_batch(len(images), triples, tp.batch_size, tp.virtual_per_batch, rng)
        real = torch.as_tensor(b.real, device=device)
        virtual = torch.as_tensor(b.virtual, device=device)
        x = x_all[real]
        lam = lam_all[virtual][:, None]
        vi, vj = torch.as_tensor(b.vi, device=device), torch.as_tensor(b.vj, device=device)
        if tp.space == "input" and len(b.virtual):
            mixed = lam[:, :, None, None] * x[vi] + (1 - lam[:, :, None, None]) * x[vj]
            s_joint = model(torch.cat([x, mixed]))
        else:
            s_real = model(x)
            s_virtual = F.normalize(lam * s_real[vi] + (1 - lam) * s_real[vj], dim=-1)
            s_joint = torch.cat([s_real, s_virtual])
        t_joint = torch.cat([t_all[real], tv_all[virtual]])
        loss = listwise_ranking_loss(t_joint, s_joint, tp.tau_teacher, tp.tau_student)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = loss.item()
        window.append(value)
        if (step + 1) % tp.log_every == 0 or step + 1 == tp.steps:
            curve.append((step + 1, float(np.mean(window))))
            window = []
        if on_step:
            on_step(step, value)
        if checkpointer and ((step + 1) % checkpointer.every == 0 or step + 1 == tp.steps):
            checkpointer.save({
                "step": step + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "curve": curve, "window": window,
            })
    return TrainResult(model.eval(), curve, start)
