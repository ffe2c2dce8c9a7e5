"""teacher: train the default teacher on the labelled pool (a stand-in for someone else's model), or
build a published one (``teacher.kind``: cirtorch, torchvision, efficientnet-lite) with its
preprocessing, downloading its weights if need be.

After this stage nothing reads the teacher's weights except the black-box wrapper behind the gate.
"""
import math

import click
import mlflow

from stages.common import ROOT, progress, setup, stage


@click.command()
@stage
def teacher():
    from pipeline import tracking
    from pipeline.checkpoint import save_model
    from pipeline.data import prepared
    from pipeline.io import write_json_atomic
    from pipeline.teacher.train import train_teacher

    params, device = setup()
    if params.teacher.kind != "train":
        return pretrained_teacher(params)
    images = prepared.pool_images(ROOT / "data/prepared")
    labels = prepared.pool_labels(ROOT / "data/prepared")
    if params.teacher.train_images:
        images, labels = images[:params.teacher.train_images], labels[:params.teacher.train_images]
    tracking.connect(ROOT)
    with mlflow.start_run(run_name="teacher", tags={"role": "teacher", "budget": "all-labels"}) as run:
        mlflow.log_params(tracking.flatten({"teacher": params.teacher.__dict__,
                                            "train_images": len(images), "device": str(device)}))
        steps = params.teacher.epochs * math.ceil(len(images) / params.teacher.batch_size)
        bar = progress(steps, "teacher")
        model, history = train_teacher(images, labels, params.teacher, params.teacher.seed, device,
                                       on_step=lambda step, total: bar.update(1))
        bar.close()
        for h in history:
            mlflow.log_metrics({"train_loss": h.loss, "train_accuracy": h.accuracy}, step=h.epoch)
        n_params = sum(p.numel() for p in model.parameters())
        mlflow.log_metric("parameters", n_params)
        save_model(ROOT / "models/teacher.pt", model, params.teacher.arch)
        tracking.write_run_ref(ROOT / "models/teacher.mlflow.json", run.info.run_id)
        write_json_atomic(ROOT / "metrics/teacher_train.json",
                          {"epochs": [h.__dict__ for h in history], "parameters": n_params})
    click.echo(f"teacher: {n_params} parameters, final train accuracy {history[-1].accuracy:.4f}")


def pretrained_teacher(params) -> None:
    from pipeline import tracking
    from pipeline.checkpoint import save_model
    from pipeline.io import write_json_atomic
    from pipeline.teacher import pretrained

    tp = params.teacher
    model, pre, source = pretrained.build(tp, ROOT / "data/downloads")
    n_params = sum(p.numel() for p in model.parameters())
    tracking.connect(ROOT)
    with mlflow.start_run(run_name="teacher", tags={"role": "teacher", "budget": "pretrained"}) as run:
        mlflow.log_params(tracking.flatten({"teacher": {**tp.__dict__, **source}, "preprocess": pre.as_dict(),
                                            "dim": model.dim}))
        mlflow.log_metric("parameters", n_params)
        save_model(ROOT / "models/teacher.pt", model, source["architecture"], extra={"preprocess": pre.as_dict()})
        tracking.write_run_ref(ROOT / "models/teacher.mlflow.json", run.info.run_id)
    write_json_atomic(ROOT / "metrics/teacher_train.json", {"pretrained": source, "parameters": n_params, "dim": model.dim})
    click.echo(f"teacher {source['architecture']} ({tp.kind}): {n_params} parameters, {model.dim}-d descriptors")


if __name__ == "__main__":
    teacher()
