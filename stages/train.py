"""train@B: the student trained to reproduce the teacher's rankings on the B-subset plus its
virtual samples; one MLflow run with its params, training curve and checkpoint."""
import hashlib
import json
import time

import click
import mlflow
import numpy as np

from stages.common import ROOT, progress, setup, stage


def inputs_key(run_params: dict, budget: int) -> str:
    """What a resumable checkpoint must match: the params and the bytes of every input."""
    h = hashlib.sha256(json.dumps(run_params, sort_keys=True, default=str).encode())
    for path in (f"data/subsets/{budget}.npy", f"data/augmented/{budget}.npz"):
        h.update((ROOT / path).read_bytes())
    return h.hexdigest()


@click.command()
@click.option("--budget", type=int, required=True)
@stage
def train(budget: int):
    from mlflow.entities import Metric

    from pipeline import tracking
    from pipeline.checkpoint import FileCheckpointer, save_model
    from pipeline.data import prepared
    from pipeline.distill.interpolation import Triples
    from pipeline.distill.train import train_student

    params, device = setup()
    subset = np.load(ROOT / f"data/subsets/{budget}.npy")
    with np.load(ROOT / f"data/augmented/{budget}.npz") as z:
        targets, triples, virtual_targets = z["real_targets"], Triples(z["i"], z["j"], z["lam"]), z["targets"]
    meta = prepared.meta(ROOT / "data/prepared")
    images = prepared.pool_images(ROOT / "data/prepared")[subset]
    tracking.connect(ROOT)  # fail now, not after training, if the store cannot be reached
    run_params = {
        "budget": budget, "teacher_queries": budget, "pool_fraction": budget / meta["pool_size"],
        "method": "derd", "seed": params.seed,
        "student": params.student.__dict__, "train": params.train.__dict__, "augment": params.augment.__dict__,
        "virtual_samples": len(triples) if params.train.space != "none" else 0,
    }
    checkpointer = FileCheckpointer(ROOT / f"checkpoints/train/{budget}.pt", inputs_key(run_params, budget),
                                    params.runtime.checkpoint_every)
    bar = progress(params.train.steps, f"student B={budget}")
    result = train_student(images, targets, triples, virtual_targets, params.student, params.train, params.seed,
                           device, on_step=lambda step, loss: bar.update(1), checkpointer=checkpointer)
    bar.close()
    ckpt = ROOT / f"models/students/{budget}.pt"
    save_model(ckpt, result.model.cpu(), params.student.arch, extra={"budget": budget})
    with mlflow.start_run(run_name=f"student-B{budget}", tags={"role": "student", "budget": str(budget),
                                                               "method": "derd"}) as run:
        mlflow.log_params(tracking.flatten({**run_params, "device": str(device)}))
        now = int(time.time() * 1000)
        mlflow.tracking.MlflowClient().log_batch(
            run.info.run_id, metrics=[Metric("train_loss", v, now, s) for s, v in result.curve])
        mlflow.log_metric("parameters", sum(p.numel() for p in result.model.parameters()))
        if result.resumed_from:
            mlflow.set_tag("resumed_from_step", str(result.resumed_from))
        mlflow.log_artifact(str(ckpt), artifact_path="model")
        tracking.write_run_ref(ROOT / f"models/students/{budget}.mlflow.json", run.info.run_id)
    checkpointer.clear()
    click.echo(f"student B={budget}: final loss {result.curve[-1][1]:.4f}; MLflow run {run.info.run_id}")


if __name__ == "__main__":
    train()
