"""efficiency: parameters, FLOPs per image and descriptor throughput of the teacher and the student.

The teacher's weights are timed on random images here: cost is measured, no descriptor is kept,
so nothing is a query. The student is the configured architecture (timing does not depend on its
trained weights)."""
import click

from stages.common import ROOT, setup, stage


@click.command()
@stage
def efficiency():
    from pipeline.checkpoint import load_model
    from pipeline.data import prepared
    from pipeline.efficiency import compare_throughput, flops_per_image, parameter_count
    from pipeline.io import write_json_atomic
    from pipeline.models import create

    params, device = setup()
    test = prepared.load_test_split(ROOT / "data/prepared")
    image_shape = (1, *test.query_images.shape[1:])
    models = {"teacher": load_model(ROOT / "models/teacher.pt", device),
              "student": create(params.student.arch, params.student.dim).to(device)}
    speed = compare_throughput(models, image_shape, 256, device=device)
    out = {}
    for name, model in models.items():
        out[f"{name}_parameters"] = parameter_count(model)
        out[f"{name}_flops_per_image"] = flops_per_image(model, image_shape)
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
