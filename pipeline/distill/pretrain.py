"""Label-free pretraining on the whole pool: the images the teacher is never asked about cost nothing,
so every student size first learns from all of them (SimCLR's contrastive objective: two random
views of one image close, views of other images apart), then distils the teacher's rankings from
the few answered images. No label and no teacher answer is read here.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.data.tensors import input_channels, to_input
from pipeline.distill.train import Checkpointer, cosine_lr
from pipeline.models import create
from pipeline.params import PretrainParams, StudentParams


def random_views(x: torch.Tensor, min_scale: float, generator: torch.Generator) -> torch.Tensor:
    """Random resized crops (area ``min_scale``..1, aspect 3/4..4/3), horizontal flips and brightness /
    contrast jitter of a batch, in one vectorised resampling (no per-image Python)."""
    n = x.shape[0]
    dev = x.device

    def uniform(lo, hi):
        return torch.rand(n, generator=generator).to(dev) * (hi - lo) + lo

    area = uniform(min_scale, 1.0)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    tx, ty = uniform(-1, 1) * (1 - sx), uniform(-1, 1) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=generator).to(dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, tx, sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = x.amin(dim=(1, 2, 3), keepdim=True)  # the normalised value of black
    out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + background
    contrast = uniform(0.6, 1.4)[:, None, None, None]
    brightness = uniform(-0.3, 0.3)[:, None, None, None]
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).contiguous(memory_format=torch.channels_last)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss over 2n L2-normalised embeddings: each view's positive is the other view of its image."""
    z = torch.cat([a, b])
    n = a.shape[0]
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def pretrain_student(
    images: np.ndarray,
    sp: StudentParams,
    pp: PretrainParams,
    seed: int,
    device: torch.device,
    on_step: Callable[[int, float], None] | None = None,
    checkpointer: Checkpointer | None = None,
    init: Callable[[torch.nn.Module], None] | None = None,
) -> tuple[torch.nn.Module, list]:
    """One student size pretrained on ``images`` (the unlabelled pool); returns (model, loss curve).
    Resumable like distillation: a killed run continues from its last checkpoint, bit-identical."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    model = create(sp.arch, sp.dim, input_channels(images))
    if init is not None:
        init(model)
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=pp.lr, weight_decay=pp.weight_decay)
    warmup = max(pp.steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, pp.steps, warmup))
    curve: list[tuple[int, float]] = []
    window: list[float] = []
    start = 0
    state = checkpointer.load() if checkpointer else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        curve, window, start = [tuple(c) for c in state["curve"]], list(state["window"]), state["step"]
    batch = min(pp.batch_size, len(images))
    model.train()
    for step in range(start, pp.steps):
        idx = np.sort(rng.choice(len(images), size=batch, replace=False))
        x = to_input(images[idx], device)
        loss = nt_xent(
            model(random_views(x, pp.min_scale, gen)), model(random_views(x, pp.min_scale, gen)), pp.temperature
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        window.append(loss.item())
        if (step + 1) % 25 == 0 or step + 1 == pp.steps:
            curve.append((step + 1, float(np.mean(window))))
            window = []
        if on_step:
            on_step(step, window[-1] if window else curve[-1][1])
        if checkpointer and ((step + 1) % checkpointer.every == 0 or step + 1 == pp.steps):
            checkpointer.save(
                {
                    "step": step + 1,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "numpy_rng": rng.bit_generator.state,
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "curve": curve,
                    "window": window,
                }
            )
    return model.eval(), curve
