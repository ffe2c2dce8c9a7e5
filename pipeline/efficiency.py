"""What the student saves: parameters, FLOPs per image and measured descriptor throughput.

The throughput ratio is measured side by side: teacher and students in one process, on the same
device and threads, on the same batch of images, each call timed in turn, several times; the
ratio is the median of the repeats' ratios, with its spread. Two estimates taken at different times
in different processes (a teacher's call timings, cold first call included, against a student's
warm median) moved by 2x from run to run.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

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


def describe_throughput(
    model: nn.Module, images, batch_size: int, device: torch.device | str = "cpu", rounds: int = 15
) -> float:
    """Images per second of ``describe`` (preprocessing included, as a teacher call is timed) on
    batches of ``images``: the median of ``rounds`` timings after a warm-up."""
    from pipeline.models.inference import describe

    batch = images[:batch_size]
    describe(model, batch, batch_size, device)  # warm-up: allocator, kernels
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        describe(model, batch, batch_size, device)
        times.append(time.perf_counter() - t0)
    return len(batch) / statistics.median(times)


def side_by_side(
    teacher: Callable[[], object],
    students: dict[str, Callable[[], object]],
    images: int,
    repeats: int = 15,
    budget_s: float = 60.0,
) -> dict:
    """The teacher and each student describing the same ``images``, timed in turn: one warm-up call
    each, then ``repeats`` rounds (fewer, at least 3, once the teacher's calls have taken ``budget_s``),
    the teacher first in one round and last in the next, so that neither always runs on a warmer
    machine. A round's ratio is the teacher's time over the student's: per student, the median ratio,
    its range and quartiles, and the median images per second of each."""
    teacher()
    for student in students.values():
        student()
    times: dict[str, list[float]] = {name: [] for name in ("teacher", *students)}
    calls = [("teacher", teacher), *students.items()]
    for r in range(repeats):
        for name, call in calls if r % 2 == 0 else calls[::-1]:
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
        if r + 1 >= 3 and sum(times["teacher"]) > budget_s:
            break
    out = {}
    for name in students:
        ratios = sorted(t / s for t, s in zip(times["teacher"], times[name]))
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
        out[name] = {
            "ratio": statistics.median(ratios),
            "ratio_min": ratios[0],
            "ratio_max": ratios[-1],
            "ratio_q1": q1,
            "ratio_q3": q3,
            "repeats": len(ratios),
            "images_per_second": images / statistics.median(times[name]),
        }
    return {"teacher_images_per_second": images / statistics.median(times["teacher"]), "students": out}
