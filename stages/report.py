"""report: the method x budget table (CSV, Markdown) and the pictures (mAP vs budget, training
curves, a retrieval gallery per model); the same in MLflow, where the runs of this configuration
are grouped under one parent run and the best student of each budget is registered."""
import json
import time
from pathlib import Path

import click
import mlflow

from stages.common import load, params_option, path_option, run_name, stage

REGISTERED = "derd-student-B{budget}"  # the registered model of each budget's best student


def _read(path: Path):
    from pipeline.errors import DatasetError

    if not path.exists():
        raise DatasetError(f"{path} not found: run `dvc repro` to make it")
    return json.loads(path.read_text())


def _gallery(test, rows: dict, title: str):
    from pipeline.pictures import gallery

    queries = [_image(test.query_images, q) for q in rows["queries"]]
    results = [[_image(test.db_images, i) for i in top] for top in rows["top"]]
    return gallery(queries, results, rows["correct"], title)


def _image(images, i):
    return images[i] if hasattr(images, "dtype") else images.load(i)


@click.command()
@params_option
@path_option("--students", help="folder of the students' metrics JSON")
@path_option("--models", help="folder of the students' checkpoints and MLflow run references")
@path_option("--galleries", help="folder of the fixed queries' top results (students/, teacher.json)")
@path_option("--teacher", help="the teacher's folder (its MLflow run reference)")
@path_option("--teacher-metrics", help="the teacher's metrics JSON")
@path_option("--queries", help="the dump's query accounting JSON")
@path_option("--efficiency", "efficiency_path", help="the efficiency JSON")
@path_option("--prepared", help="the prepared dataset (pool size, test images for the galleries)")
@path_option("--out", help="the reports folder")
@stage
def report(params_path: Path, students: Path, models: Path, galleries: Path, teacher: Path, teacher_metrics: Path,
           queries: Path, efficiency_path: Path, prepared: Path, out: Path):
    import torch

    from pipeline import pictures, tracking
    from pipeline.claims import claims
    from pipeline.claims import to_markdown as claims_markdown
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.io import atomic_write_bytes
    import pandas as pd

    from pipeline.report import ceiling_markdown, frontier_markdown, size_table, summary_table, to_markdown
    from pipeline.params import LEVERS

    params = load(params_path)
    rec = params.recommended
    main = [(b, m, params.student, s) for m in params.methods for b in params.budgets for s in params.seeds]
    sized = [(b, rec, z, s) for z in params.sizes for b in params.budgets for s in params.seeds]
    full = [(None, params.full.method, z, s) for z in params.sizes for s in params.seeds]
    ceiling = [("pool", rec, z, s) for z in params.sizes for s in params.ceiling.seeds]
    levers = [(b, f"{rec}-{lever}", params.student, s) for lever in LEVERS for b in params.levers.budgets
              for s in params.seeds]
    every = main + sized + full + ceiling + levers
    found_metrics = {cell: _read(students / f"{run_name(*cell)}.json") for cell in every}
    skipped = sorted({m["skipped"] for m in found_metrics.values() if "skipped" in m})
    metrics = {cell: m for cell, m in found_metrics.items() if "skipped" not in m}  # trained and evaluated
    teacher_map = _read(teacher_metrics)
    spent = _read(queries)
    efficiency = _read(efficiency_path)
    pool_size = prepared_data.meta(prepared)["pool_size"]
    compared = [metrics[c] for c in sized + main + levers if c in metrics and c[2] == params.student]
    lever_names = [f"{rec}-{lever}" for lever in LEVERS]
    contenders = [rec, *params.methods]  # the levers' cells are diagnostics: never marked best nor registered
    df = summary_table(compared, teacher_map["map"], pool_size, [*contenders, *lever_names], contenders)
    frontier = size_table([metrics[c] for c in sized], [metrics[c] for c in full], efficiency, teacher_map["map"],
                          [metrics[c] for c in ceiling if c in metrics], rec)
    distillers = [m for m in (rec, *params.methods) if params.method[m].uses_teacher]
    levers_off = {}
    if params.sample.strategy == "random":
        levers_off["random"] = "sample.strategy is random: the subsets are random already (the lever is off)"
    elif skipped:
        levers_off["random"] = f"its random subsets' answers come from the ceiling's, which were not asked for ({skipped[0]})"
    if params.method[rec].pool == "none":
        levers_off["nopool"] = f"method.{rec}.pool is none: it does not use the pool (the lever is off)"
    found = claims(pd.DataFrame(list(metrics.values())), teacher_map["map"], pool_size, rec, params.student,
                   efficiency, distillers, list(params.levers.budgets), contenders, levers_off)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "summary.csv", df.assign(size=params.student).round(4).to_csv(index=False).encode())
    atomic_write_bytes(out / "frontier.csv", frontier.round(4).to_csv(index=False).encode())
    md = to_markdown(df, teacher_map["map"], spent["train_queries"], teacher_map["test_queries"], efficiency)
    md += "\n" + frontier_markdown(frontier, rec)
    md += ceiling_markdown(frontier, df, rec, params.student, skipped)
    atomic_write_bytes(out / "summary.md", md.encode())
    atomic_write_bytes(out / "claims.md", claims_markdown(found, len(params.seeds)).encode())
    pictures.save_png(pictures.map_vs_budget(df[df["method"].isin(contenders)], teacher_map["map"]),
                      out / "map_vs_budget.png")
    pictures.save_png(pictures.frontier(frontier, teacher_map["map"], efficiency.get("teacher_flops_per_image"),
                                        efficiency.get("teacher_images_per_second")), out / "frontier.png")
    first_seed = params.seeds[0]
    curves = {(m, b): torch.load(models / f"{run_name(b, m, z, s)}.pt", weights_only=True)["curve"]
              for b, m, z, s in main + sized if s == first_seed and z == params.student}
    pictures.save_png(pictures.training_curves(curves), out / "training_curves.png")
    test = prepared_data.load_test_split(prepared)
    pictures.save_png(_gallery(test, _read(galleries / "teacher.json"), f"teacher (mAP {teacher_map['map']:.3f})"),
                      out / "gallery" / "teacher.png")
    for cell in metrics:
        if cell[3] == first_seed:
            name = run_name(*cell)
            pictures.save_png(_gallery(test, _read(galleries / "students" / f"{name}.json"),
                                       f"student {name} (mAP {metrics[cell]['map']:.3f})"), out / "gallery" / f"{name}.png")

    tracking.connect(Path.cwd())
    tag = tracking.pipeline_tag(params_path)
    _log_metrics(teacher / "mlflow.json", "teacher", teacher_map, teacher_metrics, out / "gallery" / "teacher.png", tag)
    example = student_arrays(test.query_images, params.data.image_size, [0, 1])  # the models' input example
    run_ids = {}
    for cell, m in metrics.items():
        b, method, size, seed = cell
        name, cost = run_name(*cell), efficiency["sizes"][size]
        who = f"B={m['budget']} {m['method']} seed {seed} {size} {cost['arch']}-{cost['dim']}d"
        run_ids[cell] = student_run(models / f"{name}.pt", name, who, tag, example)
        with mlflow.start_run(run_id=run_ids[cell]):
            _log_evaluation(who, {**m, "flops_per_image": cost["flops_per_image"],
                                  "descriptors_per_second": cost["images_per_second"]},
                            students / f"{name}.json", out / "gallery" / f"{name}.png", tag)
    registered = _register_best(df[df["method"].isin(contenders)], run_ids, params.student, first_seed)
    with mlflow.start_run(run_name="report", tags={"role": "report", **tag}):
        mlflow.log_params({"methods": ",".join(params.methods), "seeds": ",".join(map(str, params.seeds)),
                           "budgets": ",".join(map(str, params.budgets)), "recommended": params.recommended,
                           "student": params.student, "sizes": ",".join(params.sizes)})
        mlflow.log_metrics({k: v for k, v in {"train_queries": spent["train_queries"],
                                              "test_queries": teacher_map["test_queries"],
                                              "throughput_ratio": efficiency["throughput_ratio"],
                                              "throughput_ratio_min": efficiency.get("throughput_ratio_min"),
                                              "throughput_ratio_max": efficiency.get("throughput_ratio_max")}.items()
                            if v is not None})
        for name in ("summary.csv", "frontier.csv", "summary.md", "claims.md", "map_vs_budget.png", "frontier.png",
                     "training_curves.png"):
            mlflow.log_artifact(str(out / name))
        mlflow.log_artifacts(str(out / "gallery"), artifact_path="gallery")
    click.echo(md)
    click.echo((out / "claims.md").read_text())
    click.echo("registered: " + ", ".join(registered))


def _log_metrics(run_ref: Path, who: str, metrics: dict, path: Path, gallery: Path, tag: dict) -> str:
    """The teacher's metrics and gallery into the run its stage made."""
    from pipeline import tracking

    with tracking.reopen_run(run_ref, who) as run:
        _log_evaluation(who, metrics, path, gallery, tag)
        return run.info.run_id


def _log_evaluation(who: str, metrics: dict, path: Path, gallery: Path, tag: dict) -> None:
    """An evaluation into the active run, which is renamed to say what it is and how well it retrieves."""
    from pipeline import tracking

    mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metrics.items() if isinstance(v, (int, float))})
    mlflow.log_artifact(str(path), artifact_path="metrics")
    if gallery.exists():
        mlflow.log_artifact(str(gallery))
    mlflow.set_tags({"mlflow.runName": tracking.display_name(who, metrics), **tag})


def student_run(checkpoint: Path, name: str, who: str, tag: dict, example) -> str:
    """The MLflow run of the student in ``checkpoint``: found by its cell and the checkpoint's hash, or
    made once, with everything its training kept: params, curve, the images it saw, the model."""
    import torch
    from mlflow.entities import Metric

    from pipeline import tracking
    from pipeline.checkpoint import load_model
    from pipeline.io import file_sha256
    from pipeline.pictures import training_curve

    digest = file_sha256(checkpoint)[:16]
    client = mlflow.tracking.MlflowClient()
    exp_id = mlflow.get_experiment_by_name(tracking.experiment_name()).experiment_id
    found = client.search_runs([exp_id], f"tags.cell = '{name}' and tags.checkpoint = '{digest}'", max_results=1)
    if found:
        return found[0].info.run_id
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    run_params = json.loads(ckpt["run_params"])
    tags = {"role": "student", "cell": name, "checkpoint": digest, "budget": str(run_params["budget"]),
            "method": run_params["method"], "seed": str(run_params["seed"]), "size": run_params["size"],
            "student": f"{run_params['student']['arch']}-{run_params['student']['dim']}d", **tag}
    if ckpt.get("resumed_from"):
        tags["resumed_from_step"] = str(ckpt["resumed_from"])
    with mlflow.start_run(run_name=who, tags=tags) as run:
        mlflow.log_params(tracking.flatten({**run_params, "device": ckpt["device"], "precision": ckpt.get("precision"),
                                            "compiled": ckpt.get("compiled")}))
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id, metrics=[Metric("train_loss", v, now, int(s)) for s, v in ckpt["curve"]])
        mlflow.log_metrics({"parameters": sum(p.numel() for p in ckpt["state_dict"].values()),
                            "train_seconds": ckpt["train_seconds"]})
        indices = ckpt["indices"].numpy()
        described = {"all": "labelled pool (all)", "pool": "training pool (every image answered: the ceiling)"}
        tracking.log_subset(indices, Path(ckpt["indices_source"]),
                            described.get(str(run_params["budget"]), f"pool subset B={run_params['budget']}"))
        model = load_model(checkpoint)
        tracking.log_descriptor_model(model, example)
        mlflow.log_figure(training_curve([tuple(c) for c in ckpt["curve"]], f"student {name}"), "training_curve.png")
        return run.info.run_id


def _register_best(df, run_ids: dict, size: str, seed: int) -> list[str]:
    """Each budget's best method (its first seed's student) as a registered model version, once."""
    client = mlflow.tracking.MlflowClient()
    done = []
    for budget, rows in df.groupby("budget"):
        best = rows.loc[rows["map_mean"].idxmax(), "method"]
        run_id, name = run_ids[(budget, best, size, seed)], REGISTERED.format(budget=budget)
        try:
            mlflow.models.get_model_info(f"runs:/{run_id}/model")
        except (mlflow.exceptions.MlflowException, OSError):
            done.append(f"{name}: not registered (its model is not in this MLflow store; outputs restored from DVC's "
                        "cache have no model there: `dvc repro -f` its train stage to log it)")
            continue
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except mlflow.exceptions.MlflowException:
            versions = []
        version = next((v.version for v in versions if v.run_id == run_id), None)
        if version is None:
            version = mlflow.register_model(f"runs:/{run_id}/model", name).version
        done.append(f"{name} v{version} ({best})")
    return done


if __name__ == "__main__":
    report()
