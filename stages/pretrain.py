"""pretrain@size: one student size pretrained without labels or teacher answers on every training-pool
image (the validation split left out), once; every budget, method and seed of that size that sets
``pool: pretrain`` starts from it."""

import time
from pathlib import Path

import click

from stages.common import params_option, path_option, progress, setup, stage


@click.command()
@click.option("--size", required=True, help="a student size defined under 'students'")
@params_option
@path_option("--prepared", help="the prepared dataset (the pool)")
@path_option("--downloads", help="where pretrained trunk weights (students.<size>.weights) are downloaded")
@path_option("--checkpoints", help="folder for resumable training state")
@path_option("--out", help="the pretrained student .pt")
@stage
def pretrain(size: str, params_path: Path, prepared: Path, downloads: Path, checkpoints: Path, out: Path):
    from pipeline.checkpoint import FileCheckpointer, inputs_key, save_model
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.distill.pretrain import pretrain_student
    from pipeline.distill.sampling import training_pool
    from pipeline.errors import ParamsError
    from pipeline.models.registry import check_names
    from pipeline.models.weights import trunk_init

    params, device = setup(params_path)
    check_names(params)
    if size not in params.students:
        raise ParamsError(f"student size {size!r} is not under 'students'; choose from {', '.join(params.students)}")
    sp, pp = params.size(size), params.pretrain
    meta = prepared_data.pool_meta(prepared)
    indices = training_pool(meta["pool_size"], params.sample.val_size, params.sample.seed)
    images = student_arrays(prepared_data.pool_images(prepared), params.data.image_size, indices)
    run_params = {
        "size": size,
        "student": sp.model_dump(),
        "pretrain": pp.model_dump(),
        "images": len(indices),
        "image_size": params.data.image_size,
    }
    checkpointer = FileCheckpointer(
        checkpoints / f"{size}.pt",
        inputs_key(run_params, [prepared / "pool.npz", prepared / "pool.json"]),
        params.runtime.checkpoint_every,
    )
    bar = progress(pp.steps, f"pretrain {size}")
    started = time.perf_counter()
    model, curve = pretrain_student(
        images,
        sp,
        pp,
        pp.seed,
        device,
        on_step=lambda step, loss: bar.update(1),
        checkpointer=checkpointer,
        init=trunk_init(sp.arch, sp.weights, downloads),
    )
    bar.close()
    seconds = time.perf_counter() - started
    # no timing in the file: every student depends on it, so a rerun must give it back byte-identical
    save_model(out, model.cpu(), sp.arch, extra={"curve": [list(c) for c in curve], "images": len(indices)})
    checkpointer.clear()
    last = f"final loss {curve[-1][1]:.4f} after " if curve else ""
    click.echo(f"pretrained {size} on {len(indices)} unlabelled pool images: {last}{pp.steps} steps ({seconds:.0f} s)")


if __name__ == "__main__":
    pretrain()
