"""train@B-method-seed: one student trained by one method on the B-subset; one MLflow run with its
params, training curve and checkpoint. Only the ``supervised`` baseline reads the subset's labels."""
import hashlib
import json
import time
from pathlib import Path

import click
import mlflow
import numpy as np

from stages.common import cell_options, check_cell, params_option, path_option, progress, run_name, setup, stage


def inputs_key(run_params: dict, input_paths: list[Path]) -> str:
    """What a resumable checkpoint must match: the params and the bytes of every input."""
    h = hashlib.sha256(json.dumps(run_params, sort_keys=True, default=str).encode())
    for path in input_paths:
        h.update(path.read_bytes())
    return h.hexdigest()


@click.command()
@cell_options
@params_option
@path_option("--prepared", help="the prepared dataset (pool images; labels for supervised methods)")
@path_option("--subset", help="the budget's subset .npy")
@path_option("--augmented", help="the budget's targets and virtual samples .npz")
@path_option("--downloads", help="where pretrained student weights are downloaded")
@path_option("--checkpoints", help="folder for resumable training state")
@path_option("--out", help="the student checkpoint .pt")
@path_option("--run-ref", help="the MLflow run reference JSON")
@stage
def train(budget: int, method: str, seed: int, params_path: Path, prepared: Path, subset: Path, augmented: Path,
          downloads: Path, checkpoints: Path, out: Path, run_ref: Path):
    from mlflow.entities import Metric

    from pipeline import tracking
    from pipeline.models.registry import check_names
    from pipeline.checkpoint import FileCheckpointer, save_model
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.distill.interpolation import Triples
    from pipeline.distill.train import TrainingData, train_student
    from pipeline.models.weights import trunk_init
    from pipeline.pictures import training_curve

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    check_cell(params, budget, method, seed)
    m = params.method[method]
    name = run_name(budget, method, seed)
    indices = np.load(subset)
    with np.load(augmented) as z:
        targets, triples, virtual_targets = z["real_targets"], Triples(z["i"], z["j"], z["lam"]), z["targets"]
    meta = prepared_data.meta(prepared)
    images = student_arrays(prepared_data.pool_images(prepared), params.data.image_size, indices)
    data = TrainingData.for_method(m, images, targets, triples,
                                   virtual_targets, lambda: prepared_data.pool_labels(prepared)[indices])
    tracking.connect(Path.cwd())  # fail now, not after training, if the store cannot be reached
    steps, lr = params.schedule(method)
    run_params = {
        "budget": budget, "teacher_queries": budget if m.uses_teacher else 0,
        "pool_fraction": budget / meta["pool_size"], "method": method, "seed": seed,
        "uses_labels": m.uses_labels, "student": params.student.model_dump(), "train": params.train.model_dump(),
        "schedule": {"steps": steps, "lr": lr}, "method_params": m.as_dict(),
        "augment": params.augment.model_dump() if m.space != "none" else {},
        "virtual_samples": len(triples) if m.space != "none" else 0,
    }
    checkpointer = FileCheckpointer(checkpoints / f"{name}.pt", inputs_key(run_params, [subset, augmented]),
                                    params.runtime.checkpoint_every)
    bar = progress(steps, f"student {name}")
    started = time.perf_counter()
    init = trunk_init(params.student.arch, params.student.weights, downloads)
    result = train_student(data, params.student, params.train, m, seed, device,
                           on_step=lambda step, loss: bar.update(1), checkpointer=checkpointer, init=init)
    seconds = time.perf_counter() - started
    bar.close()
    ckpt = out
    save_model(ckpt, result.model.cpu(), params.student.arch,
               extra={"budget": budget, "method": method, "seed": seed, "curve": [list(c) for c in result.curve]})
    tags = {"role": "student", "budget": str(budget), "method": method, "seed": str(seed),
            "student": params.student.arch, **tracking.pipeline_tag(params_path)}
    with mlflow.start_run(run_name=f"student-{name}", tags=tags) as run:
        mlflow.log_params(tracking.flatten({**run_params, "device": str(device)}))
        now = int(time.time() * 1000)
        mlflow.tracking.MlflowClient().log_batch(
            run.info.run_id, metrics=[Metric("train_loss", v, now, s) for s, v in result.curve])
        mlflow.log_metrics({"parameters": sum(p.numel() for p in result.model.parameters()),
                            "train_seconds": seconds})
        if result.resumed_from:
            mlflow.set_tag("resumed_from_step", str(result.resumed_from))
        tracking.log_subset(indices, subset, f"pool subset B={budget}")
        tracking.log_descriptor_model(result.model, images)
        mlflow.log_figure(training_curve(result.curve, f"student {name}"), "training_curve.png")
        tracking.write_run_ref(run_ref, run.info.run_id)
    checkpointer.clear()
    click.echo(f"student {name}: final loss {result.curve[-1][1]:.4f} after {steps} steps "
               f"({seconds:.0f} s); MLflow run {run.info.run_id}")


if __name__ == "__main__":
    train()
