"""efficiency: parameters, FLOPs per image and descriptor throughput of the student, against the
teacher's.

The teacher is a black box: its throughput is what the gate measured on its answered training calls
(images per second of call time, from the ledger, as the dump reports it: calls made when they were
made, possibly by another experiment sharing the store), so the figure exists for a served teacher too; its parameters and FLOPs are known only for a teacher built here (from its card). The
student is the configured architecture, timed the same way as a teacher call: ``describe`` on
batches of real test images (timing does not depend on its trained weights)."""
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
    from pipeline.efficiency import describe_throughput, flops_per_image, parameter_count
    from pipeline.io import write_json_atomic
    from pipeline.models import create
    from pipeline.models.registry import check_names
    from pipeline.teacher.blackbox import read_card

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    card = read_card(teacher)
    ledger = json.loads(queries.read_text()).get("ledger") or {}
    training_calls = ledger.get("this_purpose") or {}  # the teacher's answered training calls, each timed
    teacher_ips = training_calls.get("answered_images_per_second")
    test = prepared_data.load_test_split(prepared)
    batch = params.queries.call_batch if isinstance(test.db_images, np.ndarray) else 8
    images = student_arrays(test.db_images, params.data.image_size, np.arange(min(len(test.db_images), 4 * batch)))
    shape = (input_channels(images), *images.shape[1:3])
    sizes = {}
    for name in params.all_sizes:
        sp = params.size(name)
        model = create(sp.arch, sp.dim, shape[0]).to(device)
        ips = describe_throughput(model, images, batch, device)
        sizes[name] = {"arch": sp.arch, "dim": sp.dim, "parameters": parameter_count(model),
                       "flops_per_image": flops_per_image(model, shape), "images_per_second": round(ips, 1),
                       "throughput_ratio": round(ips / teacher_ips, 2) if teacher_ips else None}
    main = sizes[params.student]
    out_json = {
        "student_parameters": main["parameters"], "student_flops_per_image": main["flops_per_image"],
        "student_input": list(shape), "student_images_per_second": main["images_per_second"],
        "teacher_parameters": card.get("parameters"), "teacher_flops_per_image": card.get("flops_per_image"),
        "teacher_input": card.get("input_shape"), "teacher_images_per_second": teacher_ips,
        "teacher_endpoint": card.get("endpoint", "in-process"), "device": str(device),
        "teacher_timing": (f"{training_calls.get('images_answered', 0)} images of the teacher's answered training "
                           "calls, each timed by the gate when it was made (ledger)"),
        "throughput_ratio": main["throughput_ratio"], "sizes": sizes,
    }
    write_json_atomic(out, out_json)
    t_flops = out_json["teacher_flops_per_image"]
    for name, e in sizes.items():
        click.echo(f"student {name} ({e['arch']}-{e['dim']}d): {e['parameters']:,} params, "
                   f"{e['flops_per_image'] / 1e6:.2f} MFLOP/image" + (f" ({t_flops / e['flops_per_image']:.1f}x fewer)"
                                                                   if t_flops else "") +
                   f", {e['images_per_second']:,.0f} img/s" +
                   (f" ({e['throughput_ratio']}x the teacher's)" if e["throughput_ratio"] else ""))
    click.echo("teacher: " + (f"{card['parameters']:,} params, {t_flops / 1e6:.2f} MFLOP/image, " if t_flops else "") +
               (f"{teacher_ips:,.0f} img/s (its answered calls)" if teacher_ips else "throughput unknown"))


if __name__ == "__main__":
    efficiency()
