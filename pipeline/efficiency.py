"""What the student saves: parameters, FLOPs per image and measured descriptor throughput.

The student is timed the way a teacher call is timed (``describe`` on a batch of real images), so
that the ratio of the two compares like with like.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, image_shape: tuple[int, ...]) -> int:
    """Forward FLOPs (a multiply-add counts 2) for one image, counted by torch's FlopCounterMode."""
    x = torch.zeros(1, *image_shape, device=next(model.parameters()).device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def describe_throughput(model: nn.Module, images, batch_size: int, device: torch.device | str = "cpu",
                        rounds: int = 15) -> float:
    """Images per second of ``describe`` (preprocessing included, as a teacher call is timed) on
    batches of ``images``: the median of ``rounds`` timings after a warm-up."""
    from pipeline.data.tensors import describe

    batch = images[:batch_size]
    describe(model, batch, batch_size, device)  # warm-up: allocator, kernels
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        describe(model, batch, batch_size, device)
        times.append(time.perf_counter() - t0)
    return len(batch) / statistics.median(times)
