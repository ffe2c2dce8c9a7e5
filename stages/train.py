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
import numpy as np

from stages.common import params_option, path_option, progress, run_name, setup, stage


def check_cell(params, budget: int | None, method: str, size: str, seed: int, seeds_key: str = "seeds") -> None:
    """A cell that params.yaml does not define is a mistake worth naming."""
    from pipeline.errors import ParamsError

    if budget is not None and budget not in params.budgets:
        raise ParamsError(f"budget {budget} is not in params.yaml's budgets {list(params.budgets)}")
    if method not in params.method:
        raise ParamsError(f"method {method!r} has no settings under 'method'; choose from {', '.join(params.method)}")
    if size not in params.students:
        raise ParamsError(f"student size {size!r} is not under 'students'; choose from {', '.join(params.students)}")
    seeds = params.ceiling.seeds if seeds_key == "ceiling.seeds" else params.seeds
    if seed not in seeds:
        raise ParamsError(f"seed {seed} is not in params.yaml's {seeds_key} {list(seeds)}")


@click.command()
@click.option("--budget", type=int, default=None, help="a budget of params.yaml (not with --full or --ceiling)")
@click.option("--full", is_flag=True, help="the full-supervision baseline: every labelled pool image, no teacher")
@click.option("--ceiling", is_flag=True, help="the distillation ceiling: every training-pool image answered (--targets)")
@click.option("--lever", type=click.Choice(["nopool", "random"]), default=None,
              help="nopool: without the pool pretraining; random: on a random subset (--targets)")
@click.option("--method", required=True, help="a method defined under 'method'")
@click.option("--size", required=True, help="a student size defined under 'students'")
@click.option("--seed", type=int, required=True, help="one of params.yaml's seeds")
@params_option
@path_option("--prepared", help="the prepared dataset (pool images; labels for label methods)")
@click.option("--subset", type=click.Path(path_type=Path), help="the budget's subset .npy")
@click.option("--augmented", type=click.Path(path_type=Path), help="the budget's targets and virtual samples .npz")
@click.option("--targets", type=click.Path(path_type=Path),
              help="teacher answers by pool index (indices, descriptors .npz): virtual samples are drawn here")
@path_option("--pretrained", help="the size's label-free pretraining .pt (read when the method sets pool: pretrain)")
@path_option("--downloads", help="where pretrained student weights are downloaded")
@path_option("--checkpoints", help="folder for resumable training state")
@path_option("--out", help="the student checkpoint .pt")
@stage
def train(budget: int | None, full: bool, ceiling: bool, lever: str | None, method: str, size: str, seed: int,
          params_path: Path, prepared: Path, subset: Path | None, augmented: Path | None, targets: Path | None,
          pretrained: Path, downloads: Path, checkpoints: Path, out: Path):
    from pipeline.checkpoint import FileCheckpointer, inputs_key, save_model
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.distill.interpolation import Triples, virtual_samples
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
    check_cell(params, None if full or ceiling else budget, method, size, seed,
               "ceiling.seeds" if ceiling else "seeds")
    kinds = [full, ceiling, budget is not None]
    if sum(kinds) != 1:
        raise ParamsError("give exactly one of --full, --ceiling or --budget")
    if budget is not None and (subset is None or (augmented is None) == (targets is None)):
        raise ParamsError("--budget needs --subset and one of --augmented or --targets")
    if ceiling and targets is None:
        raise ParamsError("--ceiling needs --targets (the teacher's answers for the whole training pool)")
    m, sp = params.method[method], params.size(size)
    if lever == "nopool":
        m = m.model_copy(update={"pool": "none"})
    meta = prepared_data.pool_meta(prepared)
    label = ("supervised-full" if full else f"{method}-ceiling" if ceiling else
             f"{method}-{lever}" if lever else method)
    name = run_name("pool" if ceiling else budget, label, size, seed)
    if targets is not None:
        from pipeline.distill.ceiling import skipped_reason

        reason = skipped_reason(targets)
        if reason:  # no answers for the pool: the cell is reported as not measured, and why
            from pipeline.checkpoint import save_skipped

            save_skipped(out, reason, {"budget": budget, "method": label, "size": size, "seed": seed})
            return click.echo(f"student {name}: skipped ({reason})")
    pool = prepared_data.pool_images(prepared)
    inputs = [prepared / "pool.npz", prepared / "pool.json"]
    if full:
        m = m.model_copy(update={"steps": params.full.steps})
        indices = training_pool(meta["pool_size"], params.sample.val_size, params.sample.seed)
        data = TrainingData.for_method(m, student_arrays(pool, params.data.image_size, indices), None, None, None,
                                       lambda: prepared_data.pool_labels(prepared)[indices])
    else:
        if augmented is not None:
            indices = np.load(subset)
            with np.load(augmented) as z:
                answers, triples, virtual_targets = z["real_targets"], Triples(z["i"], z["j"], z["lam"]), z["targets"]
            inputs += [subset, augmented]
        else:
            from pipeline.distill.ceiling import answers_for

            indices = (training_pool(meta["pool_size"], params.sample.val_size, params.sample.seed) if ceiling
                       else np.load(subset))
            answers = answers_for(targets, indices)
            a = params.augment
            triples, virtual_targets = virtual_samples(answers, a.ratio, a.alpha, a.pairing, a.knn, seed, len(indices))
            inputs += [targets] + ([subset] if subset is not None else [])
        if ceiling:
            m = m.model_copy(update={"steps": params.ceiling.steps})
        data = TrainingData.for_method(m, student_arrays(pool, params.data.image_size, indices), answers, triples,
                                       virtual_targets, lambda: prepared_data.pool_labels(prepared)[indices])
    if m.pool == "pretrain":
        inputs.append(pretrained)
    steps, lr = m.schedule(params.train)
    virtual = m.space != "none" and data.triples is not None
    run_params = {
        "budget": "all" if full else "pool" if ceiling else budget,
        "teacher_queries": budget if m.uses_teacher and budget is not None else len(indices) if ceiling else 0,
        "train_images": len(indices), "pool_fraction": len(indices) / meta["pool_size"],
        "method": label, "seed": seed, "uses_labels": m.uses_labels,
        "size": size, "image_size": params.data.image_size, "student": sp.model_dump(), "train": params.train.model_dump(),
        "schedule": {"steps": steps, "lr": lr}, "method_params": m.as_dict(),
        "pretrain": params.pretrain.model_dump() if m.pool == "pretrain" else {},
        "subset": "random" if lever == "random" else params.sample.strategy if budget is not None else "all",
        "augment": params.augment.model_dump() if virtual else {}, "virtual_samples": len(data.triples) if virtual else 0,
    }
    checkpointer = FileCheckpointer(checkpoints / f"{name}.pt", inputs_key(run_params, inputs),
                                    params.runtime.checkpoint_every)
    bar = progress(steps, f"student {name}", quiet=rank != 0)
    started = time.perf_counter()
    if m.pool == "pretrain":  # the size's label-free pretraining (it already holds any trunk weights)
        init = pretrained_init(pretrained, sp)
    else:
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
             "indices": torch.as_tensor(indices),
             "indices_source": str(prepared / "pool.npz" if full or ceiling else subset)}
    if result.projection is not None:  # to the teacher's space: for asymmetric retrieval
        extra["projection"] = {k: v.detach().cpu() for k, v in result.projection.state_dict().items()}
    save_model(out, result.model.cpu(), sp.arch, extra=extra)
    checkpointer.clear()
    distributed.stop()
    click.echo(f"student {name}: final loss {result.curve[-1][1]:.4f} after {steps} steps ({seconds:.0f} s)")


def pretrained_init(path: Path, sp):
    """Loads the size's pretrained weights into a fresh student; refuses a file of another size."""
    import torch

    from pipeline.errors import DatasetError

    if not path.exists():
        raise DatasetError(f"{path} not found: run `dvc repro pretrain` (the method sets pool: pretrain)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if (ckpt["arch"], ckpt["dim"]) != (sp.arch, sp.dim):
        raise DatasetError(f"{path} holds a {ckpt['arch']}-{ckpt['dim']}d student, not {sp.arch}-{sp.dim}d: "
                           "rerun `dvc repro pretrain`")
    return lambda model: model.load_state_dict(ckpt["state_dict"])


if __name__ == "__main__":
    train()
