"""efficiency: parameters, FLOPs per image and descriptor throughput of the student sizes, against the
teacher's.

A teacher built here (its weights on this machine) is timed side by side with the students: one
process, the same device and threads, the same batch of ``queries.call_batch`` test images (the
teacher gets their pixels as the gate sends them, each student its input), calls timed in turn and
repeated; the throughput ratio is the median over the repeats, with its range. A teacher reachable
only by queries cannot be timed so: its throughput is what the gate measured on its answered
training calls (from the ledger, as the dump reports it; the network included, calls made when they
were made, possibly by another experiment sharing the store), and the ratio against it is labelled
as such. That call-timing figure is kept apart for every teacher (``served_teacher_images_per_second``).
Parameters and FLOPs of the teacher are known only for one built here (from its card)."""

from pathlib import Path

import click

from stages.common import params_option, path_option, setup, stage


@click.command()
@params_option
@path_option("--teacher", help="the teacher's folder (card.json)")
@path_option("--queries", help="the dump's query accounting JSON (the gate's call timings)")
@path_option("--prepared", help="the prepared dataset (test images to time the student on)")
@path_option("--out", help="the efficiency JSON")
@stage
def efficiency(params_path: Path, teacher: Path, queries: Path, prepared: Path, out: Path):
    import json

    import numpy as np

    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.data.tensors import input_channels
    from pipeline.efficiency import describe_throughput, flops_per_image, parameter_count, side_by_side
    from pipeline.io import write_json_atomic
    from pipeline.models import create
    from pipeline.models.inference import describe
    from pipeline.models.registry import check_names
    from pipeline.params import BUILT_TEACHERS
    from pipeline.teacher.blackbox import client_for, read_card
    from pipeline.teacher.inputs import TeacherInputs

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    card = read_card(teacher)
    ledger = json.loads(queries.read_text()).get("ledger") or {}
    training_calls = ledger.get("this_purpose") or {}  # the teacher's answered training calls, each timed
    calls_ips = training_calls.get("answered_images_per_second")
    test = prepared_data.load_test_split(prepared)
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
        client = client_for(card, teacher, params.queries, device)
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
    write_json_atomic(out, out_json)
    t_flops = out_json["teacher_flops_per_image"]
    for name, e in sizes.items():
        click.echo(
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
    click.echo(
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


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    efficiency()
