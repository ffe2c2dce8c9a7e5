"""train: one student. Its checkpoint keeps what its MLflow run will show (params, training curve,
the pool images it saw); the report stage logs every student's run in one process (an MLflow
start-up per student cost more than training the small ones).

- ``--budget B --method M --size S --seed N``: trained by method M on the B-subset (the comparison
  cells, and the recommended method at every size: the frontier). Only label methods read the
  subset's labels; the others read the teacher's stored answers.
- ``--full --method supervised --size S --seed N``: the paper's full-supervision baseline, the same
  student trained on every labelled pool image outside the validation split, no teacher.
"""

import json
import time
from pathlib import Path

import click

from stages.common import params_option, path_option, progress, run_name, setup, stage


@click.command()
@click.option("--budget", type=int, default=None, help="a budget of params.yaml (not with --full or --ceiling)")
@click.option("--full", is_flag=True, help="the full-supervision baseline: every labelled pool image, no teacher")
@click.option(
    "--ceiling", is_flag=True, help="the distillation ceiling: every training-pool image answered (--targets)"
)
@click.option(
    "--lever",
    type=click.Choice(["nopool", "random"]),
    default=None,
    help="nopool: without the pool pretraining; random: on a random subset (--targets)",
)
@click.option("--method", required=True, help="a method defined under 'method'")
@click.option("--size", required=True, help="a student size defined under 'students'")
@click.option("--seed", type=int, required=True, help="one of params.yaml's seeds")
@params_option
@path_option("--prepared", help="the prepared dataset (pool images; labels for label methods)")
@click.option("--subset", type=click.Path(path_type=Path), help="the budget's subset .npy")
@click.option("--augmented", type=click.Path(path_type=Path), help="the budget's targets and virtual samples .npz")
@click.option(
    "--targets",
    type=click.Path(path_type=Path),
    help="teacher answers by pool index (indices, descriptors .npz): virtual samples are drawn here",
)
@path_option("--pretrained", help="the size's label-free pretraining .pt (read when the method sets pool: pretrain)")
@path_option("--downloads", help="where pretrained student weights are downloaded")
@path_option("--checkpoints", help="folder for resumable training state")
@path_option("--out", help="the student checkpoint .pt")
@stage
def train(
    budget: int | None,
    full: bool,
    ceiling: bool,
    lever: str | None,
    method: str,
    size: str,
    seed: int,
    params_path: Path,
    prepared: Path,
    subset: Path | None,
    augmented: Path | None,
    targets: Path | None,
    pretrained: Path,
    downloads: Path,
    checkpoints: Path,
    out: Path,
):
    from pipeline import accel, distributed
    from pipeline.checkpoint import FileCheckpointer, inputs_key, save_model
    from pipeline.distill.cell import Cell, check_inputs, initial_weights, run_params, training_inputs
    from pipeline.distill.train import train_student
    from pipeline.models.registry import check_names

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    distributed.relaunch(params.runtime.processes)  # under torchrun when runtime.processes > 1
    device = distributed.start(device)
    rank = distributed.world()[0]
    cell = Cell(budget, full, ceiling, lever, method, size, seed)
    cell.check(params)
    check_inputs(cell, subset, augmented, targets)
    m, sp = cell.method_params(params), params.size(size)
    name = run_name("pool" if ceiling else budget, cell.label, size, seed)
    if targets is not None:
        from pipeline.distill.ceiling import skipped_reason

        reason = skipped_reason(targets)
        if reason:  # no answers for the pool: the cell is reported as not measured, and why
            from pipeline.checkpoint import save_skipped

            save_skipped(out, reason, {"budget": budget, "method": cell.label, "size": size, "seed": seed})
            return click.echo(f"student {name}: skipped ({reason})")
    inputs = training_inputs(cell, m, params, prepared, subset, augmented, targets, pretrained)
    logged = run_params(cell, m, params, inputs)
    steps = logged["schedule"]["steps"]
    precision = accel.precision_of(params.runtime.precision, device)
    # a resume continues only the same computation: a checkpoint of another precision is started over
    checkpointer = FileCheckpointer(
        checkpoints / f"{name}.pt",
        inputs_key({**logged, "precision": precision}, inputs.files),
        params.runtime.checkpoint_every,
    )
    bar = progress(steps, f"student {name}", quiet=rank != 0)
    started = time.perf_counter()
    init = initial_weights(m, sp, pretrained, downloads)
    compiled = accel.compile_of(params.runtime.compile, device)
    result = train_student(
        inputs.data,
        sp,
        params.train,
        m,
        seed,
        device,
        on_step=lambda step, loss: bar.update(1),
        checkpointer=checkpointer,
        init=init,
        precision=precision,
        compiled=compiled,
    )
    seconds = time.perf_counter() - started
    bar.close()
    if rank != 0:  # rank 0 writes the outputs
        return distributed.stop()
    import torch

    extra = {
        "budget": budget,
        "method": cell.label,
        "size": size,
        "seed": seed,
        "curve": [list(c) for c in result.curve],
        "run_params": json.dumps(logged, default=str),
        "train_seconds": seconds,
        "resumed_from": result.resumed_from,
        "device": str(device),
        "precision": precision,
        "compiled": compiled,
        "indices": torch.as_tensor(inputs.indices),
        "indices_source": str(prepared / "pool.npz" if full or ceiling else subset),
    }
    if result.projection is not None:  # to the teacher's space: for asymmetric retrieval
        extra["projection"] = {k: v.detach().cpu() for k, v in result.projection.state_dict().items()}
    save_model(out, result.model.cpu(), sp.arch, extra=extra)
    checkpointer.clear()
    distributed.stop()
    click.echo(f"student {name}: final loss {result.curve[-1][1]:.4f} after {steps} steps ({seconds:.0f} s)")


if __name__ == "__main__":
    train()
