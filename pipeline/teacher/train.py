"""Train the default teacher on the labelled pool.

It stands in for a retrieval model someone else owns. A cosine-softmax (normalised-softmax)
classifier on top of the L2-normalised descriptor makes the descriptor itself class-discriminative
under inner product, which is what retrieval mAP measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline import accel
from pipeline.data.tensors import to_input
from pipeline.models import create
from pipeline.params import TeacherParams


class CosineClassifier(nn.Module):
    """Normalised-softmax head with an additive cosine margin (CosFace) on the true class."""

    def __init__(self, dim: int, n_classes: int, scale: float, margin: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        self.scale = scale
        self.margin = margin

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        """Cosine similarity to each class centre."""
        return desc @ F.normalize(self.weight, dim=-1).T

    def loss(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        margin = self.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return F.cross_entropy(self.scale * (cos - margin), labels)


@dataclass
class EpochLog:
    epoch: int
    loss: float
    accuracy: float


def train_teacher(
    images: np.ndarray,
    labels: np.ndarray,
    p: TeacherParams,
    seed: int,
    device: torch.device,
    on_step: Callable[[int, int], None] | None = None,
    precision: str = "fp32",
) -> tuple[nn.Module, list[EpochLog]]:
    """The network and its per-epoch log; ``precision`` as in :mod:`pipeline.accel` (the head and the
    loss stay float32)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_classes = int(labels.max()) + 1
    model = create(p.arch, p.dim).to(device).to(memory_format=torch.channels_last)
    head = CosineClassifier(p.dim, n_classes, p.scale, p.margin).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
    scaler = accel.grad_scaler(precision, device)  # float16 only; a no-op otherwise
    steps_per_epoch = int(np.ceil(len(images) / p.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=p.epochs * steps_per_epoch)
    history = []
    step = 0
    for epoch in range(p.epochs):
        model.train()
        order = rng.permutation(len(images))
        total_loss = correct = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * p.batch_size : (b + 1) * p.batch_size]
            x = to_input(images[idx], device).contiguous(memory_format=torch.channels_last)
            y = torch.as_tensor(labels[idx], device=device)
            with accel.autocast(precision, device):
                descriptors = model(x)
            logits = head(descriptors.float())
            loss = head.loss(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            step += 1
            if on_step:
                on_step(step, p.epochs * steps_per_epoch)
        history.append(EpochLog(epoch + 1, total_loss / len(images), correct / len(images)))
    model.eval()
    return model.to(memory_format=torch.contiguous_format), history
