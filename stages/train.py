"""train: the students of one cell, every seed. Each checkpoint keeps what its MLflow run will show
(params, training curve, the pool images it saw); the report stage logs every student's run in one
process (an MLflow start-up per student cost more than training the small ones).

- ``--budget B --method M --size S``: trained by method M on the B-subset (the comparison cells, and
  the recommended method at every size: the frontier). Only label methods read the subset's labels;
  the others read the teacher's stored answers.
- ``--full --method supervised --size S``: the paper's full-supervision baseline, the same student
  trained on every labelled pool image outside the validation split, no teacher.

Every seed of params.yaml (``--seed`` picks some) in one stage: on a CPU side by side, one forked
process each (:mod:`pipeline.concurrency`), which saves both a process start-up per student and the
cores a lone small student leaves idle. Each student's resumable checkpoint is kept until all of
them are saved, so a stage killed after some finished loses none of them.
"""

import json
import time
from pathlib import Path
from typing import NamedTuple

import click

from stages.common import params_option, path_option, progress, run_name, setup, stage


class Files(NamedTuple):
    """Where a stage's students read and write (the command's paths)."""

    prepared: Path
    subset: Path | None
    augmented: Path | None  # the budget's folder: <seed>.npz each
    targets: Path | None
    pretrained: Path
    downloads: Path
    checkpoints: Path
    out: Path


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
@click.option(
    "--seed",
    "seeds",
    type=int,
    multiple=True,
    help="one of params.yaml's seeds (repeatable); none: every seed of `seeds` (`ceiling.seeds` with --ceiling)",
)
@params_option
@path_option("--prepared", help="the prepared dataset (pool images; labels for label methods)")
@click.option("--subset", type=click.Path(path_type=Path), help="the budget's subset .npy")
@click.option(
    "--augmented", type=click.Path(path_type=Path), help="the budget's targets and virtual samples (<seed>.npz each)"
)
@click.option(
    "--targets",
    type=click.Path(path_type=Path),
    help="teacher answers by pool index (indices, descriptors .npz): virtual samples are drawn here",
)
@path_option("--pretrained", help="the size's label-free pretraining .pt (read when the method sets pool: pretrain)")
@path_option("--downloads", help="where pretrained student weights are downloaded")
@path_option("--checkpoints", help="folder for resumable training state")
@path_option("--out", help="the students' folder (<name>.pt each)")
@stage
def train(
    budget: int | None,
    full: bool,
    ceiling: bool,
    lever: str | None,
    method: str,
    size: str,
    seeds: tuple[int, ...],
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
    from pipeline import concurrency, distributed
    from pipeline.distill.cell import Cell, check_inputs, fetch_weights
    from pipeline.models.registry import check_names

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    distributed.relaunch(params.runtime.processes)  # under torchrun when runtime.processes > 1
    device = distributed.start(device)
    cells = [
        Cell(budget, full, ceiling, lever, method, size, seed)
        for seed in dict.fromkeys(seeds or (params.ceiling.seeds if ceiling else params.seeds))
    ]
    for cell in cells:  # every student's inputs checked before any is trained
        cell.check(params)
        check_inputs(cell, subset, augmented, targets)
    out.mkdir(parents=True, exist_ok=True)
    names = [run_name("pool" if ceiling else budget, cell.label, size, cell.seed) for cell in cells]
    if targets is not None:
        from pipeline.distill.ceiling import skipped_reason

        reason = skipped_reason(targets)
        if reason:  # no answers for the pool: the cells are reported as not measured, and why
            from pipeline.checkpoint import save_skipped

            for cell, name in zip(cells, names):
                labels = {"budget": budget, "method": cell.label, "size": size, "seed": cell.seed}
                save_skipped(out / f"{name}.pt", reason, labels)
            return click.echo(f"students {', '.join(names)}: skipped ({reason})")
    fetch_weights(cells[0].method_params(params), params.size(size), downloads)  # once, not per student
    import torch

    r = params.runtime  # torch's thread count here is its default, or runtime.threads: the threads to share
    at_once, threads = concurrency.plan(
        len(cells), device.type, r.processes, r.students_at_once, r.threads, torch.get_num_threads()
    )
    if at_once > 1:
        click.echo(f"training {', '.join(names)}: {at_once} at once, one process and {threads} thread(s) each")
    sharing = {"students_at_once": at_once, "threads": threads or torch.get_num_threads()}
    files = Files(prepared, subset, augmented, targets, pretrained, downloads, checkpoints, out)

    def job(cell, name):
        def train():  # named as the stage: a child's error reads "error [train]: ..."
            train_one(cell, name, params, device, files, sharing, plain=at_once > 1)

        return stage(train)

    jobs = [job(cell, name) for cell, name in zip(cells, names)]
    rerun = " (each student resumes from its last checkpoint)"
    concurrency.run_at_once(jobs, [f"student {name}" for name in names], at_once, threads, rerun)
    if distributed.world()[0] == 0:  # every student saved: their resumable states are done with
        for name in names:
            (checkpoints / f"{name}.pt").unlink(missing_ok=True)
    distributed.stop()


def train_one(cell, name: str, params, device, files: Files, sharing: dict, plain: bool) -> None:
    """Train and save one student (its resumable state stays until the whole stage is done)."""
    from pipeline import accel, distributed
    from pipeline.checkpoint import FileCheckpointer, inputs_key, save_model
    from pipeline.distill.cell import initial_weights, run_params, training_inputs
    from pipeline.distill.train import train_student
    from pipeline.grid import augmented_path

    prepared, subset, targets, pretrained, downloads, checkpoints, out = (
        files.prepared,
        files.subset,
        files.targets,
        files.pretrained,
        files.downloads,
        files.checkpoints,
        files.out,
    )
    augmented = None if files.augmented is None else augmented_path(files.augmented, cell.seed)

    rank = distributed.world()[0]
    m, sp = cell.method_params(params), params.size(cell.size)
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
    bar = progress(steps, f"student {name}", quiet=rank != 0, plain=plain)
    started = time.perf_counter()
    init = initial_weights(m, sp, pretrained, downloads)
    compiled = accel.compile_of(params.runtime.compile, device)
    result = train_student(
        inputs.data,
        sp,
        params.train,
        m,
        cell.seed,
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
        return
    import torch

    extra = {
        "budget": cell.budget,
        "method": cell.label,
        "size": cell.size,
        "seed": cell.seed,
        "curve": [list(c) for c in result.curve],
        "run_params": json.dumps(logged, default=str),
        "train_seconds": seconds,  # wall-clock, with the cores shared by the students at once
        **sharing,
        "resumed_from": result.resumed_from,
        "device": str(device),
        "precision": precision,
        "compiled": compiled,
        "indices": torch.as_tensor(inputs.indices),
        "indices_source": str(prepared / "pool.npz" if cell.full or cell.ceiling else subset),
    }
    if result.projection is not None:  # to the teacher's space: for asymmetric retrieval
        extra["projection"] = {k: v.detach().cpu() for k, v in result.projection.state_dict().items()}
    save_model(out / f"{name}.pt", result.model.cpu(), sp.arch, extra=extra)
    click.echo(f"student {name}: final loss {result.curve[-1][1]:.4f} after {steps} steps ({seconds:.0f} s)")


if __name__ == "__main__":
    train()
