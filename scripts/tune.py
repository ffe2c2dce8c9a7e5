"""Choose defaults on the validation split, never on the test queries.

Trains students for every combination of the given parameter values and scores each on the
validation split: the last ``sample.val_size`` images of the pool permutation, which no budget
subset ever contains, with their labels as class-level ground truth. Needs `dvc repro dump` first
(it reads the teacher's stored answers: the ceiling's, for every training-pool image, so any subset
strategy can be scored; no new query). Results: reports/tuning.csv (appended) and
one MLflow run per cell, tagged ``split=validation``.

  python scripts/tune.py --method derd --budgets 60,3000 \\
      --set method.derd.losses.listwise.tau_student=0.05,0.1 --set train.steps=400,800
"""

from __future__ import annotations

import copy
import itertools
import sys
import time
from pathlib import Path

import click
import mlflow
import numpy as np
import pandas as pd
import yaml

ROOT = Path.cwd()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _set(raw: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        raw = raw.setdefault(key, {})
    raw[last] = value


def _parse_grid(specs: tuple[str, ...]) -> list[tuple[str, list]]:
    grid = []
    for spec in specs:
        if "=" not in spec:
            raise click.BadParameter(f"{spec!r}: expected key=value1,value2,...", param_hint="--set")
        key, values = spec.split("=", 1)
        grid.append((key, [yaml.safe_load(v) for v in values.split(",")]))
    return grid


def subset_for(p, pool, budget: int) -> np.ndarray:
    """The budget's subset as the sample stage draws it (sample.strategy, sample.features)."""
    from pipeline.distill.selection import choose_subset

    s = p.sample
    return choose_subset(
        s.strategy,
        s.features,
        pool,
        len(pool),
        budget,
        p.data.image_size,
        s.val_size,
        s.seed,
        ROOT / "models/pretrained",
        neighbours=s.neighbours,
    )


@click.command()
@click.option("--method", "methods", required=True, multiple=True, help="method(s) from params.yaml")
@click.option("--budgets", default="", help="comma-separated; default: params.yaml's budgets")
@click.option("--seeds", default="0", help="comma-separated seeds")
@click.option("--set", "sets", multiple=True, help="key=v1,v2,... (dotted params.yaml key); repeatable")
@click.option("--out", default="reports/tuning.csv", show_default=True)
def tune(methods, budgets, seeds, sets, out):
    import torch

    from pipeline import accel, tracking
    from pipeline.data import prepared
    from pipeline.data.images import student_arrays
    from pipeline.data.split import class_level_gnd
    from pipeline.data.tensors import resolve_device
    from pipeline.distill.ceiling import answers_for, skipped_reason
    from pipeline.distill.interpolation import virtual_samples
    from pipeline.distill.sampling import validation_split
    from pipeline.distill.train import TrainingData, train_student
    from pipeline.models.inference import describe
    from pipeline.params import parse_params
    from pipeline.retrieval.metrics import retrieval_metrics

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    grid = _parse_grid(sets)
    budgets_list = [int(b) for b in budgets.split(",")] if budgets else list(parse_params(base).budgets)
    seed_list = [int(s) for s in seeds.split(",")]
    pool = prepared.pool_images(ROOT / "data/prepared")
    labels = prepared.pool_labels(ROOT / "data/prepared")
    answers = ROOT / "data/teacher/pool_descriptors.npz"  # the ceiling's: every training-pool image, any subset
    if not answers.exists() or skipped_reason(answers):
        answers = ROOT / "data/teacher/train_descriptors.npz"  # else the budget's dump: its subsets only
    with np.load(answers) as z:
        dumped = z["indices"]
    p0 = parse_params(base)
    if p0.runtime.threads:
        torch.set_num_threads(p0.runtime.threads)
    device = resolve_device(p0.runtime.device)
    size = p0.data.image_size  # photo pools: the student's input squares
    vq, vdb = validation_split(len(pool), p0.sample.val_size, p0.sample.val_queries, p0.sample.seed)
    if np.isin(dumped, np.concatenate([vq, vdb])).any():
        raise SystemExit(f"{answers} contains validation images: budgets exceed the pool less sample.val_size")
    gnd = class_level_gnd(labels[vq], labels[vdb])
    tracking.connect(ROOT)
    rows = []
    for values in itertools.product(*[v for _, v in grid]) if grid else [()]:
        raw = copy.deepcopy(base)
        for (key, _), value in zip(grid, values):
            _set(raw, key, value)
        p = parse_params(raw)
        setting = {key: value for (key, _), value in zip(grid, values)}
        for method, budget, seed in itertools.product(methods, budgets_list, seed_list):
            m = p.method[method]
            subset = subset_for(p, pool, budget)
            targets = answers_for(answers, subset)  # refuses a subset the file has no answers for
            a = p.augment
            triples, vt = virtual_samples(targets, a.ratio, a.alpha, a.pairing, a.knn, seed, budget)
            data = TrainingData.for_method(
                m, student_arrays(pool, size, subset), targets, triples, vt, lambda: labels[subset]
            )
            init = None
            if m.pool == "pretrain":  # the pretrain stage's weights for this size (`dvc repro pretrain`)
                from pipeline.distill.cell import pretrained_init

                init = pretrained_init(ROOT / "models/pretrained" / f"{p.student}.pt", p.size())
            t0 = time.perf_counter()
            precision = accel.precision_of(p.runtime.precision, device)
            model = train_student(data, p.size(), p.train, m, seed, device, init=init, precision=precision).model
            seconds = time.perf_counter() - t0
            metrics = retrieval_metrics(
                describe(model, student_arrays(pool, size, vq), 1024, device),
                describe(model, student_arrays(pool, size, vdb), 1024, device),
                gnd,
                p.eval.kappas,
            )
            row = {
                "method": method,
                "budget": budget,
                "seed": seed,
                "pool": m.pool,
                "strategy": p.sample.strategy,
                **setting,
                "precision": precision,
                "val_map": round(metrics["map"], 4),
                "train_seconds": round(seconds, 1),
            }
            rows.append(row)
            click.echo(" ".join(f"{k}={v}" for k, v in row.items()))
            with mlflow.start_run(
                run_name=f"tune-{budget}-{method}-{seed}",
                tags={"role": "tuning", "split": "validation", "method": method, "budget": str(budget)},
            ):
                mlflow.log_params(
                    tracking.flatten(
                        {
                            "budget": budget,
                            "seed": seed,
                            "method": method,
                            "method_params": m.as_dict(),
                            "train": p.train.model_dump(),
                            "augment": p.augment.model_dump(),
                            "setting": setting,
                        }
                    )
                )
                mlflow.log_metrics({"val_map": metrics["map"], "train_seconds": seconds})
    df = pd.DataFrame(rows)
    path = ROOT / out
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, mode="a", header=not path.exists(), index=False)
    keys = [k for k, _ in grid]
    summary = df.pivot_table(index=["method", *keys], columns="budget", values="val_map", aggfunc="mean")
    click.echo(summary.to_string())


if __name__ == "__main__":
    tune()
