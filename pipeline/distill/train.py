"""Train a student by one method: distil the teacher's rankings on real + virtual samples, or
(the supervised baseline) learn from the subset's labels.

A batch is built around virtual samples: draw ``virtual_per_batch`` triples, put both endpoints of
each in the batch, fill up with other real samples. The joint set J = real + virtual then has
teacher targets for every member (stored, never queried) and student representations computed
from the batch alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from pipeline import accel, distributed
from pipeline.data.tensors import input_channels, to_input
from pipeline.distill.interpolation import Triples
from pipeline.distill.losses import JointBatch, Objective
from pipeline.models import create
from pipeline.params import MethodParams, StudentParams, TrainParams


@dataclass(frozen=True)
class Batch:
    real: np.ndarray  # subset positions of the real samples
    virtual: np.ndarray  # indices into the triples
    vi: np.ndarray  # positions of each virtual sample's endpoints within ``real``
    vj: np.ndarray


def make_batch(n: int, triples: Triples, batch_size: int, virtual_per_batch: int, rng: np.random.Generator) -> Batch:
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

    def load(self, refuse: Callable[[dict], str | None] | None = None) -> dict | None: ...

    def save(self, state: dict) -> None: ...


@dataclass
class TrainResult:
    model: torch.nn.Module
    curve: list[tuple[int, float]]  # (step, mean loss over the last ``log_every`` steps)
    resumed_from: int  # 0 for a fresh start
    projection: torch.nn.Linear | None = None  # the learned map to the teacher's space (regression term)


@dataclass(frozen=True)
class TrainingData:
    """What one student may learn from: the B subset images and, per method, teacher targets or labels."""

    images: np.ndarray  # (B, H, W) greyscale or (B, H, W, 3) colour, uint8
    targets: np.ndarray | None = None  # (B, d_T) teacher descriptors (distillation methods)
    triples: Triples | None = None  # virtual samples over the subset
    virtual_targets: np.ndarray | None = None
    labels: np.ndarray | None = None  # (B,) only for the supervised baseline

    @classmethod
    def for_method(
        cls,
        method: MethodParams,
        images: np.ndarray,
        targets: np.ndarray,
        triples: Triples,
        virtual_targets: np.ndarray,
        labels: "Callable[[], np.ndarray]",
    ) -> "TrainingData":
        """Only what ``method`` may see: teacher targets for distillation, labels (read lazily) for supervision."""
        virtual = method.space != "none"
        return cls(
            images,
            targets if method.uses_teacher else None,
            triples if virtual else None,
            virtual_targets if virtual else None,
            labels() if method.uses_labels else None,
        )

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


@dataclass
class Training:
    """Everything a training step updates, built by :func:`build` (or restored, :func:`restore`)."""

    model: torch.nn.Module  # the student (its weights are what training returns)
    forward: Callable[[torch.Tensor], torch.Tensor]  # the student's forward pass (compiled, or sharded over ranks)
    objective: Objective  # the method's loss terms, with their own parameters
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler  # float16 only: its loss scale
    rng: np.random.Generator  # draws the batches
    steps: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # losses since the curve's last point
    start: int = 0  # the first step to run (> 0 when resumed)


def build(
    data: TrainingData,
    sp: StudentParams,
    tp: TrainParams,
    method: MethodParams,
    seed: int,
    device: torch.device,
    init: Callable[[torch.nn.Module], None] | None = None,
    precision: str = "fp32",
    compiled: bool = False,
) -> Training:
    """A fresh student of size ``sp`` (``init`` puts pretrained weights into it), the method's
    objective and its optimiser, all seeded by ``seed``. Under torchrun each rank runs its share of a
    batch's rows and the joint batch is gathered with its gradients."""
    if method.uses_teacher and data.targets is None:
        raise ValueError("this method distils the teacher: it needs the subset's teacher targets")
    if method.uses_labels and data.labels is None:
        raise ValueError("this method is supervised: it needs the subset's labels")
    steps, lr = method.schedule(tp)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_classes = int(data.labels.max()) + 1 if data.labels is not None else 0
    model = create(sp.arch, sp.dim, input_channels(data.images))
    if init is not None:  # pretrained trunk weights (student.weights)
        init(model)
    model = model.to(device).to(memory_format=torch.channels_last)  # faster convolutions
    forward = torch.compile(model) if compiled else model
    if distributed.world()[1] > 1:  # each rank runs its share of the rows; the joint batch is gathered with gradients
        from torch.nn.parallel import DistributedDataParallel

        model = distributed.cross_rank_batchnorm(model)
        ddp = DistributedDataParallel(model)
        ddp = torch.compile(ddp) if compiled else ddp

        def forward(x: torch.Tensor) -> torch.Tensor:
            return distributed.gather_rows(ddp(x[distributed.shard(len(x))]), len(x))

    objective = Objective(method, sp.dim, data.teacher_dim, n_classes).to(device)
    opt = torch.optim.AdamW(
        list(model.parameters()) + list(objective.parameters()),
        lr=lr,
        weight_decay=tp.weight_decay,
        fused=fused_adamw(device),
    )
    warmup = max(steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, warmup))
    return Training(model, forward, objective, opt, sched, accel.grad_scaler(precision, device), rng, steps)


def fused_adamw(device: torch.device) -> bool | None:
    """PyTorch's fused AdamW where it has one: the same update in one kernel for every tensor, 2-14% of
    a small student's CPU step."""
    return True if device.type in ("cpu", "cuda") else None


def other_optimiser(opt: torch.optim.Optimizer, saved: dict) -> str | None:
    """Why an optimiser state saved by another implementation (fused or not) cannot be continued by
    ``opt``, or None: loading it would switch the kernel mid-run (and break float16's scaled step)."""
    built = any(g.get("fused") for g in opt.param_groups)
    made = any(g.get("fused") for g in saved.get("param_groups", []))
    if built == made:
        return None
    kind = {True: "the fused AdamW kernel", False: "the unfused AdamW"}
    return f"its optimiser state was made by {kind[made]}, this run uses {kind[built]}"


def restore(t: Training, state: dict, device: torch.device) -> None:
    """Continue from a :func:`checkpoint`: weights, optimiser, schedule, both RNGs and the curve."""
    t.model.load_state_dict(state["model"])
    t.objective.load_state_dict(state["objective"])
    t.opt.load_state_dict(state["optimizer"])
    t.sched.load_state_dict(state["scheduler"])
    t.rng.bit_generator.state = state["numpy_rng"]
    if state.get("scaler"):  # float16's loss scale (an empty state for a disabled scaler)
        t.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and device.type == "cuda":  # flips and shifts draw on the GPU
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    t.curve, t.window, t.start = [tuple(c) for c in state["curve"]], list(state["window"]), state["step"]


def checkpoint(t: Training, step: int, device: torch.device) -> dict:
    """The full state after ``step`` steps: a run resumed from it ends bit-identical to an uninterrupted one."""
    return {
        "step": step,
        "model": t.model.state_dict(),
        "objective": t.objective.state_dict(),
        "optimizer": t.opt.state_dict(),
        "scheduler": t.sched.state_dict(),
        "scaler": t.scaler.state_dict(),
        "numpy_rng": t.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "curve": t.curve,
        "window": t.window,
    }


class OnDevice:
    """The training data as tensors on the device, once: images, teacher targets, virtual samples, labels."""

    def __init__(self, data: TrainingData, method: MethodParams, device: torch.device):
        self.n, self.device = len(data.images), device
        self.triples = data.triples if method.space != "none" and data.triples is not None else _NO_TRIPLES
        self.x = to_input(data.images, device).contiguous(memory_format=torch.channels_last)
        tensor = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float32, device=device)
        self.targets, self.lam = tensor(data.targets), tensor(self.triples.lam)
        self.virtual_targets = tensor(data.virtual_targets) if len(self.triples) else None
        self.labels = None if data.labels is None else torch.as_tensor(data.labels, dtype=torch.int64, device=device)


@dataclass(frozen=True)
class StepBatch:
    """One step's inputs: real images (flipped and shifted if the method says so) and, for each
    virtual sample, its weight and the positions of its endpoints among them; the joint set's
    teacher targets (real first) and the real samples' labels."""

    x: torch.Tensor
    lam: torch.Tensor  # (n_virtual, 1)
    vi: torch.Tensor
    vj: torch.Tensor
    targets: torch.Tensor | None
    labels: torch.Tensor | None

    @property
    def n_virtual(self) -> int:
        return len(self.vi)


def draw_batch(d: OnDevice, tp: TrainParams, method: MethodParams, rng: np.random.Generator) -> StepBatch:
    """The next batch (:func:`make_batch`), drawn with ``rng`` (and the torch RNG for flips and shifts)."""
    b = make_batch(d.n, d.triples, tp.batch_size, tp.virtual_per_batch, rng)
    real = torch.as_tensor(b.real, device=d.device)
    virtual = torch.as_tensor(b.virtual, device=d.device)
    x = d.x[real]
    if method.flip_shift:
        x = flip_shift(x)
    lam = d.lam[virtual][:, None]
    vi, vj = torch.as_tensor(b.vi, device=d.device), torch.as_tensor(b.vj, device=d.device)
    targets = (
        None
        if d.targets is None
        else d.targets[real]
        if d.virtual_targets is None
        else torch.cat([d.targets[real], d.virtual_targets[virtual]])
    )
    return StepBatch(x, lam, vi, vj, targets, None if d.labels is None else d.labels[real])


def train_step(t: Training, b: StepBatch, method: MethodParams, precision: str, device: torch.device) -> float:
    """One optimiser step on ``b``: the student describes the joint set (virtual samples mixed in its
    representation space, or as mixed images for ``space: input``), the objective scores it. The loss."""
    mixed_images = method.space == "input" and b.n_virtual
    with accel.autocast(precision, device):  # the network in low precision; the losses in float32
        if mixed_images:
            lam = b.lam[:, :, None, None]
            s_joint = t.forward(torch.cat([b.x, lam * b.x[b.vi] + (1 - lam) * b.x[b.vj]])).float()
        else:
            s_real = t.forward(b.x).float()
    if not mixed_images:
        s_virtual = F.normalize(b.lam * s_real[b.vi] + (1 - b.lam) * s_real[b.vj], dim=-1)
        s_joint = torch.cat([s_real, s_virtual])
    loss, _ = t.objective(JointBatch(s_joint, b.targets, len(b.x), b.labels))
    t.opt.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    t.scaler.step(t.opt)
    t.scaler.update()
    t.sched.step()
    return loss.item()


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
    """Train one student of ``method`` on ``data``: :func:`build`, :func:`restore` from the
    ``checkpointer`` if it holds a state, then per step :func:`draw_batch` and :func:`train_step`,
    and a :func:`checkpoint` every ``checkpointer.every`` steps (on rank 0).

    A resumed run ends bit-identical to an uninterrupted one. Under torchrun every rank builds the
    same batch and runs its share of it (``pipeline.distributed``). ``init`` puts pretrained weights
    into the fresh network before training.
    """
    t = build(data, sp, tp, method, seed, device, init, precision, compiled)
    state = checkpointer.load(lambda s: other_optimiser(t.opt, s["optimizer"])) if checkpointer else None
    if state is not None:
        restore(t, state, device)
    on_device = OnDevice(data, method, device)
    rank = distributed.world()[0]
    t.model.train()
    for step in range(t.start, t.steps):
        value = train_step(t, draw_batch(on_device, tp, method, t.rng), method, precision, device)
        t.window.append(value)
        if (step + 1) % tp.log_every == 0 or step + 1 == t.steps:
            t.curve.append((step + 1, float(np.mean(t.window))))
            t.window = []
        if on_step:
            on_step(step, value)
        if checkpointer and rank == 0 and ((step + 1) % checkpointer.every == 0 or step + 1 == t.steps):
            checkpointer.save(checkpoint(t, step + 1, device))
    projection = next((term.projection for term in t.objective.terms if hasattr(term, "projection")), None)
    return TrainResult(t.model.eval(), t.curve, t.start, None if projection is None else projection.cpu().eval())
