"""efficiency: parameters, FLOPs per image and descriptor throughput of the teacher and the student.

The teacher's weights are timed on random images here: cost is measured, no descriptor is kept,
so nothing is a query. The student is the configured architecture (timing does not depend on its
trained weights)."""
import click

from stages.common import ROOT, setup, stage


@click.command()
@stage
def efficiency():
    import numpy as np

    from pipeline.checkpoint import load_model
    from pipeline.data.tensors import input_channels
    from pipeline.data import prepared
    from pipeline.efficiency import compare_throughput, flops_per_image, parameter_count
    from pipeline.io import write_json_atomic
    from pipeline.models import create

    params, device = setup()
    test = prepared.load_test_split(ROOT / "data/prepared")
    teacher = load_model(ROOT / "models/teacher.pt", device)
    if isinstance(test.query_images, np.ndarray):  # small arrays: both models read them as they are
        student_shape = (input_channels(test.query_images), *test.query_images.shape[1:3])
        batch = 256
    else:  # photos: the student at data.image_size, batches of a few images
        student_shape, batch = (3, params.data.image_size, params.data.image_size), 8
    # a published teacher reads photos with their longest side at teacher.image_size (4:3 assumed)
    teacher_shape = student_shape if teacher.preprocess is None else \
        (3, teacher.preprocess["image_size"] * 3 // 4, teacher.preprocess["image_size"])
    shapes = {"teacher": teacher_shape, "student": student_shape}
    models = {"teacher": teacher,
              "student": create(params.student.arch, params.student.dim, student_shape[0]).to(device)}
    speed = compare_throughput(models, shapes, batch, rounds=15 if batch > 8 else 3, device=device)
    out = {}
    for name, model in models.items():
        out[f"{name}_parameters"] = parameter_count(model)
        out[f"{name}_flops_per_image"] = flops_per_image(model, shapes[name])
        out[f"{name}_input"] = list(shapes[name])
        out[f"{name}_images_per_second"] = round(speed[name], 1)
    out["throughput_ratio"] = round(speed["student"] / speed["teacher"], 2)
    out["device"] = str(device)
    write_json_atomic(ROOT / "metrics/efficiency.json", out)
    click.echo(f"student {out['student_parameters']} params, {out['student_flops_per_image'] / 1e6:.1f} MFLOP/image, "
               f"{out['student_images_per_second']:.0f} img/s; teacher {out['teacher_parameters']} params, "
               f"{out['teacher_flops_per_image'] / 1e6:.1f} MFLOP/image, {out['teacher_images_per_second']:.0f} img/s; "
               f"throughput ratio {out['throughput_ratio']}x on {device}")


if __name__ == "__main__":
    efficiency()
