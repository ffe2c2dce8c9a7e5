"""train@B: the student trained to reproduce the teacher's rankings on the B-subset plus its
virtual samples; one MLflow run with its params, training curve and checkpoint."""
import click
import mlflow
import numpy as np

from stages.augment import subset_targets
from stages.common import ROOT, progress, setup, stage


@click.command()
@click.option("--budget", type=int, required=True)
@stage
def train(budget: int):
    from pipeline import tracking
    from pipeline.checkpoint import save_model
    from pipeline.data import prepared
    from pipeline.distill.interpolation import Triples
    from pipeline.distill.train import train_student

    params, device = setup()
    subset, targets = subset_targets(budget)
    with np.load(ROOT / f"data/augmented/{budget}.npz") as z:
        triples, virtual_targets = Triples(z["i"], z["j"], z["lam"]), z["targets"]
    meta = prepared.meta(ROOT / "data/prepared")
    images = prepared.pool_images(ROOT / "data/prepared")[subset]
    tracking.connect(ROOT)
    run_params = {
        "budget": budget, "teacher_queries": budget, "pool_fraction": budget / meta["pool_size"],
        "method": "derd", "seed": params.seed, "device": str(device),
        "student": params.student.__dict__, "train": params.train.__dict__, "augment": params.augment.__dict__,
        "virtual_samples": len(triples) if params.train.space != "none" else 0,
    }
    ckpt = ROOT / f"models/students/{budget}.pt"
    with mlflow.start_run(run_name=f"student-B{budget}", tags={"role": "student", "budget": str(budget),
                                                               "method": "derd"}) as run:
        mlflow.log_params(tracking.flatten(run_params))
        bar = progress(params.train.steps, f"student B={budget}")
        curve: list[tuple[int, float]] = []
        window: list[float] = []

        def on_step(step: int, loss: float) -> None:
            window.append(loss)
            bar.update(1)
            if (step + 1) % params.train.log_every == 0 or step + 1 == params.train.steps:
                curve.append((step + 1, float(np.mean(window))))
                bar.set_postfix(loss=f"{curve[-1][1]:.4f}")
                window.clear()

        model = train_student(images, targets, triples, virtual_targets, params.student, params.train,
                              params.seed, device, on_step)
        bar.close()
        from mlflow.entities import Metric
        import time

        now = int(time.time() * 1000)
        mlflow.tracking.MlflowClient().log_batch(
            run.info.run_id, metrics=[Metric("train_loss", v, now, s) for s, v in curve])
        mlflow.log_metric("parameters", sum(p.numel() for p in model.parameters()))
        save_model(ckpt, model.cpu(), params.student.arch, extra={"budget": budget})
        mlflow.log_artifact(str(ckpt), artifact_path="model")
        tracking.write_run_ref(ROOT / f"models/students/{budget}.mlflow.json", run.info.run_id)
    click.echo(f"student B={budget}: final loss {curve[-1][1]:.4f}; MLflow run {run.info.run_id}")


if __name__ == "__main__":
    train()
