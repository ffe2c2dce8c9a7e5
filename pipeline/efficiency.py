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


def efficiency_record(params, device: torch.device, card: dict, teacher_dir, ledger: dict, test) -> dict:
    """Parameters, FLOPs per image and throughput of every student size against the teacher's
    (``card``; its weights in ``teacher_dir`` for a teacher built here): side by side in this process
    for a built teacher, else against its answered calls' timings (``ledger``, network included).
    ``test``: the prepared test split, whose first ``queries.call_batch`` database images are timed."""
    import numpy as np

    from pipeline.data.images import student_arrays
    from pipeline.data.tensors import input_channels
    from pipeline.models import create
    from pipeline.models.inference import describe
    from pipeline.params import BUILT_TEACHERS
    from pipeline.teacher.blackbox import client_for
    from pipeline.teacher.inputs import TeacherInputs

    training_calls = ledger.get("this_purpose") or {}  # the teacher's answered training calls, each timed
    calls_ips = training_calls.get("answered_images_per_second")
    batch = params.queries.call_batch if isinstance(test.db_images, np.ndarray) else 8
    idx = np.arange(min(len(test.db_images), batch))
    images = student_arrays(test.db_images, params.data.image_size, idx)
    shape = (input_channels(images), *images.shape[1:3])
    models = {}
    for name in params.all_sizes:
        sp = params.size(name)
        models[name] = create(sp.arch, sp.dim, shape[0]).to(device)
    built = card["kind"] in BUILT_TEACHERS
    if built:  # side by side, in this process
        client = client_for(card, teacher_dir, params.queries, device)
        pixels = TeacherInputs(test.db_images, [str(i) for i in range(len(test.db_images))]).batch(idx)
        timed = side_by_side(
            lambda: client(pixels),
            {name: (lambda m=m: describe(m, images, batch, device)) for name, m in models.items()},
            len(idx),
        )
        teacher_ips = timed["teacher_images_per_second"]
    else:
        teacher_ips = calls_ips
    sizes = {}
    for name, model in models.items():
        sp = params.size(name)
        if built:
            t = timed["students"][name]
            ips, ratio = (
                t["images_per_second"],
                {
                    "throughput_ratio": round(t["ratio"], 2),
                    "throughput_ratio_min": round(t["ratio_min"], 2),
                    "throughput_ratio_max": round(t["ratio_max"], 2),
                    "throughput_ratio_quartiles": [round(t["ratio_q1"], 2), round(t["ratio_q3"], 2)],
                    "throughput_repeats": t["repeats"],
                },
            )
        else:
            ips = describe_throughput(model, images, batch, device)
            ratio = {
                "throughput_ratio": round(ips / calls_ips, 2) if calls_ips else None,
                "throughput_ratio_min": None,
                "throughput_ratio_max": None,
            }
        sizes[name] = {
            "arch": sp.arch,
            "dim": sp.dim,
            "parameters": parameter_count(model),
            "flops_per_image": flops_per_image(model, shape),
            "images_per_second": round(ips, 1),
            **ratio,
        }
    main = sizes[params.student]
    served = (
        f"{training_calls.get('images_answered', 0)} images of the teacher's answered training calls, each "
        "timed by the gate when it was made (ledger): "
        + (
            "in-process, no network, the cold first call included; not used for the ratio"
            if built
            else "the network included, so not like for like with the students"
        )
    )
    method = "side-by-side" if built else "call timings" if calls_ips else None
    out_json = {
        "student_parameters": main["parameters"],
        "student_flops_per_image": main["flops_per_image"],
        "student_input": list(shape),
        "student_images_per_second": main["images_per_second"],
        "teacher_parameters": card.get("parameters"),
        "teacher_flops_per_image": card.get("flops_per_image"),
        "teacher_input": card.get("input_shape"),
        "teacher_images_per_second": round(teacher_ips, 1) if teacher_ips else None,
        "teacher_endpoint": card.get("endpoint", "in-process"),
        "device": str(device),
        "threads": torch_threads(),
        "batch": len(idx),
        "teacher_timing": (
            f"side by side with the students: one process, {device}, {torch_threads()} thread(s), the "
            f"same {len(idx)} test images, calls timed in turn, {main.get('throughput_repeats')} "
            "repeats after a warm-up"
            if built
            else served
        ),
        "throughput_method": method,
        **{
            k: main.get(k)
            for k in (
                "throughput_ratio",
                "throughput_ratio_min",
                "throughput_ratio_max",
                "throughput_ratio_quartiles",
                "throughput_repeats",
            )
        },
        "served_teacher_images_per_second": calls_ips,
        "served_teacher_timing": served,
        "sizes": sizes,
    }
    return out_json


def summary_lines(record: dict, card: dict) -> list[str]:
    """What the stage prints: one line per student size, then the teacher's."""
    sizes, t_flops, teacher_ips = (
        record["sizes"],
        record["teacher_flops_per_image"],
        record["teacher_images_per_second"],
    )
    built, calls_ips = record["throughput_method"] == "side-by-side", record["served_teacher_images_per_second"]
    lines = []
    for name, e in sizes.items():
        lines.append(
            f"student {name} ({e['arch']}-{e['dim']}d): {e['parameters']:,} params, "
            f"{e['flops_per_image'] / 1e6:.2f} MFLOP/image"
            + (f" ({t_flops / e['flops_per_image']:.1f}x fewer)" if t_flops else "")
            + f", {e['images_per_second']:,.0f} img/s"
            + (
                f" ({e['throughput_ratio']}x the teacher's"
                + (
                    f", {e['throughput_ratio_min']}x to "
                    f"{e['throughput_ratio_max']}x over {e['throughput_repeats']} side-by-side repeats)"
                    if e["throughput_ratio_min"] is not None
                    else ", from its call timings)"
                )
                if e["throughput_ratio"]
                else ""
            )
        )
    lines.append(
        "teacher: "
        + (f"{card['parameters']:,} params, {t_flops / 1e6:.2f} MFLOP/image, " if t_flops else "")
        + (
            f"{teacher_ips:,.0f} img/s ({'side by side' if built else 'its answered calls, network included'})"
            if teacher_ips
            else "throughput unknown"
        )
        + (
            f"; its answered calls through the gate: {calls_ips:,.0f} img/s (not used for the ratio)"
            if built and calls_ips
            else ""
        )
    )

    return lines


def torch_threads() -> int:
    return torch.get_num_threads()
