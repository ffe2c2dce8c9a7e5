"""What the student saves: parameters, FLOPs per image and measured descriptor throughput.

Throughput is noisy on a shared machine, so the two models are timed in alternation and the
report gives their ratio, which drifts far less than either figure.
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


def _seconds_per_batch(model: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
    return time.perf_counter() - t0


def compare_throughput(models: dict[str, nn.Module], image_shape: tuple[int, ...] | dict[str, tuple[int, ...]],
                       batch_size: int = 256, rounds: int = 15, device: torch.device | str = "cpu") -> dict[str, float]:
    """Images per second of each model (median of ``rounds``, timed in alternation) on random inputs,
    in the layout that ``describe`` uses (channels-last). ``image_shape`` may differ per model (a
    published teacher reads photos at its own resolution, the student at its own)."""
    shapes = image_shape if isinstance(image_shape, dict) else {name: image_shape for name in models}
    xs = {name: torch.rand(batch_size, *shapes[name], device=device).contiguous(memory_format=torch.channels_last)
          for name in models}
    for name, model in models.items():
        model.eval().to(memory_format=torch.channels_last)
        _seconds_per_batch(model, xs[name])  # warm-up: allocator, kernels
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(_seconds_per_batch(model, xs[name]))
    return {name: batch_size / statistics.median(t) for name, t in times.items()}


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
