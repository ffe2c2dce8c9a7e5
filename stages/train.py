"""train: one student. Its checkpoint keeps what its MLflow run will show (params, training curve,
the pool images it saw); the report stage logs every student's run in one process (an MLflow
start-up per student cost more than training the small ones).

- ``--budget B --method M --size S --seed N``: trained by method M on the B-subset (the comparison
  cells, and the recommended method at every size: the frontier). Only label methods read the
  subset's labels; the others read the teacher's stored answers.
- ``--full --method supervised --size S --seed N``: the paper's full-supervision baseline, the same
  student trained on every labelled pool image outside the validation split, no teacher.
"""
import hashlib
import json
import time
from pathlib import Path

import click
import numpy as np

from stages.common import params_option, path_option, progress, run_name, setup, stage


def inputs_key(run_params: dict, input_paths: list[Path]) -> str:
    """What a resumable checkpoint must match: the params and the bytes of every input."""
    h = hashlib.sha256(json.dumps(run_params, sort_keys=True, default=str).encode())
    for path in input_paths:
        h.update(path.read_bytes())
    return h.hexdigest()


def check_cell(params, budget: int | None, method: str, size: str, seed: int) -> None:
    """A cell that params.yaml does not define is a mistake worth naming."""
    from pipeline.errors import ParamsError

    if budget is not None and budget not in params.budgets:
        raise ParamsError(f"budget {budget} is not in params.yaml's budgets {list(params.budgets)}")
    if method not in params.method:
        raise ParamsError(f"method {method!r} has no settings under 'method'; choose from {', '.join(params.method)}")
    if size not in params.students:
        raise ParamsError(f"student size {size!r} is not under 'students'; choose from {', '.join(params.students)}")
    if seed not in params.seeds:
        raise ParamsError(f"seed {seed} is not in params.yaml's seeds {list(params.seeds)}")


@click.command()
@click.option("--budget", type=int, default=None, help="a budget of params.yaml (not with --full)")
@click.option("--full", is_flag=True, help="the full-supervision baseline: every labelled pool image, no teacher")
@click.option("--method", required=True, help="a method defined under 'method'")
@click.option("--size", required=True, help="a student size defined under 'students'")
@click.option("--seed", type=int, required=True, help="one of params.yaml's seeds")
@params_option
@path_option("--prepared", help="the prepared dataset (pool images; labels for label methods)")
@click.option("--subset", type=click.Path(path_type=Path), help="the budget's subset .npy")
@click.option("--augmented", type=click.Path(path_type=Path), help="the budget's targets and virtual samples .npz")
@path_option("--downloads", help="where pretrained student weights are downloaded")
@path_option("--checkpoints", help="folder for resumable training state")
@path_option("--out", help="the student checkpoint .pt")
@stage
def train(budget: int | None, full: bool, method: str, size: str, seed: int, params_path: Path, prepared: Path,
          subset: Path | None, augmented: Path | None, downloads: Path, checkpoints: Path, out: Path):
    from pipeline.checkpoint import FileCheckpointer, save_model
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.distill.interpolation import Triples
    from pipeline.distill.sampling import training_pool
    from pipeline.distill.train import TrainingData, train_student
    from pipeline.errors import ParamsError
    from pipeline.models.registry import check_names
    from pipeline.models.weights import trunk_init

    from pipeline import distributed

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    distributed.relaunch(params.runtime.processes)  # under torchrun when runtime.processes > 1
    device = distributed.start(device)
    rank = distributed.world()[0]
    check_cell(params, None if full else budget, method, size, seed)
    if full == (budget is not None) or (not full and (subset is None or augmented is None)):
        raise ParamsError("give either --full, or --budget with --subset and --augmented")
    m, sp = params.method[method], params.size(size)
    meta = prepared_data.pool_meta(prepared)
    name = run_name(budget, method, size, seed)
    pool = prepared_data.pool_images(prepared)
    if full:
        m = m.model_copy(update={"steps": params.full.steps})
        indices = training_pool(meta["pool_size"], params.sample.val_size, params.sample.seed)
        data = TrainingData.for_method(m, student_arrays(pool, params.data.image_size, indices), None, None, None,
                                       lambda: prepared_data.pool_labels(prepared)[indices])
        inputs = [prepared / "pool.npz", prepared / "pool.json"]
    else:
        indices = np.load(subset)
        with np.load(augmented) as z:
            targets, triples, virtual_targets = z["real_targets"], Triples(z["i"], z["j"], z["lam"]), z["targets"]
        data = TrainingData.for_method(m, student_arrays(pool, params.data.image_size, indices), targets, triples,
                                       virtual_targets, lambda: prepared_data.pool_labels(prepared)[indices])
        inputs = [prepared / "pool.npz", prepared / "pool.json", subset, augmented]
    steps, lr = m.schedule(params.train)
    virtual = m.space != "none" and data.triples is not None
    run_params = {
        "budget": "all" if full else budget, "teacher_queries": budget if m.uses_teacher and not full else 0,
        "train_images": len(indices), "pool_fraction": len(indices) / meta["pool_size"],
        "method": "supervised-full" if full else method, "seed": seed, "uses_labels": m.uses_labels,
        "size": size, "image_size": params.data.image_size, "student": sp.model_dump(), "train": params.train.model_dump(),
        "schedule": {"steps": steps, "lr": lr}, "method_params": m.as_dict(),
        "augment": params.augment.model_dump() if virtual else {}, "virtual_samples": len(data.triples) if virtual else 0,
    }
    checkpointer = FileCheckpointer(checkpoints / f"{name}.pt", inputs_key(run_params, inputs),
                                    params.runtime.checkpoint_every)
    bar = progress(steps, f"student {name}", quiet=rank != 0)
    started = time.perf_counter()
    if rank == 0:  # one rank downloads pretrained weights; the others read them once it is done
        init = trunk_init(sp.arch, sp.weights, downloads)
    distributed.barrier()
    if rank != 0:
        init = trunk_init(sp.arch, sp.weights, downloads)
    from pipeline import accel

    precision = accel.precision_of(params.runtime.precision, device)
    compiled = accel.compile_of(params.runtime.compile, device)
    result = train_student(data, sp, params.train, m, seed, device, on_step=lambda step, loss: bar.update(1),
                           checkpointer=checkpointer, init=init, precision=precision, compiled=compiled)
    seconds = time.perf_counter() - started
    bar.close()
    if rank != 0:  # rank 0 writes the outputs
        return distributed.stop()
    import torch

    extra = {"budget": budget, "method": run_params["method"], "size": size, "seed": seed,
             "curve": [list(c) for c in result.curve], "run_params": json.dumps(run_params, default=str),
             "train_seconds": seconds, "resumed_from": result.resumed_from, "device": str(device),
             "precision": precision, "compiled": compiled,
             "indices": torch.as_tensor(indices), "indices_source": str(prepared / "pool.npz" if full else subset)}
    if result.projection is not None:  # to the teacher's space: for asymmetric retrieval
        extra["projection"] = {k: v.detach().cpu() for k, v in result.projection.state_dict().items()}
    save_model(out, result.model.cpu(), sp.arch, extra=extra)
    checkpointer.clear()
    distributed.stop()
    click.echo(f"student {name}: final loss {result.curve[-1][1]:.4f} after {steps} steps ({seconds:.0f} s)")


if __name__ == "__main__":
    train()
