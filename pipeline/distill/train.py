"""Train a student by one method: distil the teacher's rankings on real + virtual samples, or
(the supervised baseline) learn from the subset's labels.

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

from pipeline.data.tensors import input_channels, to_input
from pipeline.distill.interpolation import Triples
from pipeline import accel, distributed
from pipeline.distill.losses import JointBatch, Objective
from pipeline.models import create
from pipeline.params import MethodParams, StudentParams, TrainParams


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
    # the rest drawn among the other members without listing them (a step costs the batch, not the pool):
    # the k-th other member is k plus the endpoints at or before it; the same draws as choosing from the list
    others = n - len(endpoints)
    picked = rng.choice(others, size=min(fill, others), replace=False)
    picked = picked + np.searchsorted(endpoints - np.arange(len(endpoints)), picked, side="right")
    real = np.concatenate([endpoints, picked])
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
    projection: torch.nn.Linear | None = None  # the learned map to the teacher's space (regression term)


@dataclass(frozen=True)
class TrainingData:
    """What one student may learn from: the B subset images and, per method, teacher targets or labels."""

    images: np.ndarray                      # (B, H, W) greyscale or (B, H, W, 3) colour, uint8
    targets: np.ndarray | None = None       # (B, d_T) teacher descriptors (distillation methods)
    triples: Triples | None = None          # virtual samples over the subset
    virtual_targets: np.ndarray | None = None
    labels: np.ndarray | None = None        # (B,) only for the supervised baseline

    @classmethod
    def for_method(cls, method: MethodParams, images: np.ndarray, targets: np.ndarray, triples: Triples,
                   virtual_targets: np.ndarray, labels: "Callable[[], np.ndarray]") -> "TrainingData":
        """Only what ``method`` may see: teacher targets for distillation, labels (read lazily) for supervision."""
        virtual = method.space != "none"
        return cls(images, targets if method.uses_teacher else None, triples if virtual else None,
                   virtual_targets if virtual else None, labels() if method.uses_labels else None)

    @property
    def teacher_dim(self) -> int:
        return 0 if self.targets is None else int(self.targets.shape[1])


_NO_TRIPLES = Triples(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))


def flip_shift(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Label-preserving image augmentation: random horizontal flip and a shift of up to ``max_shift`` pixels."""
    n, _, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n)).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, :, None]
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, :]
    shifted = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]  # (n, h, w, c)
    return shifted.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def train_student(
    data: TrainingData,
    sp: StudentParams,
    tp: TrainParams,
    method: MethodParams,
    seed: int,
    device: torch.device,
    on_step: Callable[[int, float], None] | None = None,
    checkpointer: Checkpointer | None = None,
    init: Callable[[torch.nn.Module], None] | None = None,
    precision: str = "fp32",
    compiled: bool = False,
) -> TrainResult:
    """Train one student of ``method`` on ``data``.

    With a ``checkpointer``, the full state (weights, optimiser, schedule, both RNGs, curve) is
    saved every ``checkpointer.every`` steps; a resumed run ends bit-identical to an uninterrupted one.
    Under torchrun every rank builds the same batch and runs its share of it (``pipeline.distributed``).
    ``init`` puts pretrained weights into the fresh network before training.
    """
    if method.uses_teacher and data.targets is None:
        raise ValueError("this method distils the teacher: it needs the subset's teacher targets")
    if method.uses_labels and data.labels is None:
        raise ValueError("this method is supervised: it needs the subset's labels")
    steps, lr = method.schedule(tp)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    triples = data.triples if method.space != "none" and data.triples is not None else _NO_TRIPLES
    n_classes = int(data.labels.max()) + 1 if data.labels is not None else 0
    model = create(sp.arch, sp.dim, input_channels(data.images))
    if init is not None:  # pretrained trunk weights (student.weights)
        init(model)
    model = model.to(device).to(memory_format=torch.channels_last)  # faster convolutions
    rank, ranks = distributed.world()
    forward = torch.compile(model) if compiled else model
    if ranks > 1:  # each rank runs its share of the rows; the joint batch is gathered with its gradients
        from torch.nn.parallel import DistributedDataParallel

        model = distributed.cross_rank_batchnorm(model)
        ddp = DistributedDataParallel(model)
        ddp = torch.compile(ddp) if compiled else ddp

        def forward(x: torch.Tensor) -> torch.Tensor:
            return distributed.gather_rows(ddp(x[distributed.shard(len(x))]), len(x))
    objective = Objective(method, sp.dim, data.teacher_dim, n_classes).to(device)
    opt = torch.optim.AdamW(list(model.parameters()) + list(objective.parameters()), lr=lr,
                            weight_decay=tp.weight_decay)
    warmup = max(steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, warmup))
    scaler = accel.grad_scaler(precision, device)
    curve: list[tuple[int, float]] = []
    window: list[float] = []
    start = 0
    state = checkpointer.load() if checkpointer else None
    if state is not None:
        model.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and device.type == "cuda":  # flips and shifts draw on the GPU
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        curve, window, start = [tuple(c) for c in state["curve"]], list(state["window"]), state["step"]
    x_all = to_input(data.images, device).contiguous(memory_format=torch.channels_last)
    tensor = (lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float32, device=device))
    t_all, tv_all, lam_all = tensor(data.targets), tensor(data.virtual_targets), tensor(triples.lam)
    if not len(triples):
        tv_all = None
    y_all = None if data.labels is None else torch.as_tensor(data.labels, dtype=torch.int64, device=device)
    model.train()
    for step in range(start, steps):
        b = make_batch(len(data.images), triples, tp.batch_size, tp.virtual_per_batch, rng)
        real = torch.as_tensor(b.real, device=device)
        virtual = torch.as_tensor(b.virtual, device=device)
        x = x_all[real]
        if method.flip_shift:
            x = flip_shift(x)
        lam = lam_all[virtual][:, None]
        vi, vj = torch.as_tensor(b.vi, device=device), torch.as_tensor(b.vj, device=device)
        with accel.autocast(precision, device):  # the network in low precision; the losses in float32
            if method.space == "input" and len(b.virtual):
                mixed = lam[:, :, None, None] * x[vi] + (1 - lam[:, :, None, None]) * x[vj]
                s_joint = forward(torch.cat([x, mixed])).float()
            else:
                s_real = forward(x).float()
        if not (method.space == "input" and len(b.virtual)):
            s_virtual = F.normalize(lam * s_real[vi] + (1 - lam) * s_real[vj], dim=-1)
            s_joint = torch.cat([s_real, s_virtual])
        t_joint = None if t_all is None else t_all[real] if tv_all is None else torch.cat([t_all[real], tv_all[virtual]])
        labels = None if y_all is None else y_all[real]
        loss, _ = objective(JointBatch(s_joint, t_joint, len(b.real), labels))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        value = loss.item()
        window.append(value)
        if (step + 1) % tp.log_every == 0 or step + 1 == steps:
            curve.append((step + 1, float(np.mean(window))))
            window = []
        if on_step:
            on_step(step, value)
        if checkpointer and rank == 0 and ((step + 1) % checkpointer.every == 0 or step + 1 == steps):
            checkpointer.save({
                "step": step + 1, "model": model.state_dict(), "objective": objective.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "curve": curve, "window": window,
            })
    projection = next((term.projection for term in objective.terms if hasattr(term, "projection")), None)
    return TrainResult(model.eval(), curve, start, None if projection is None else projection.cpu().eval())
