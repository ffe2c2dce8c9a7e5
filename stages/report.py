"""report: the method x budget table (CSV, Markdown) and the pictures (mAP vs budget, training
curves, a retrieval gallery per model); the same in MLflow, where the runs of this configuration
are grouped under one parent run and the best student of each budget is registered."""
import json
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
    from pipeline.data import prepared as prepared_data
    from pipeline.io import atomic_write_bytes
    from pipeline.report import summary_table, to_markdown

    params = load(params_path)
    cells = [run_name(b, m, s) for m in params.methods for b in params.budgets for s in params.seeds]
    runs = [_read(students / f"{name}.json") for name in cells]
    teacher_map = _read(teacher_metrics)
    spent = _read(queries)
    efficiency = _read(efficiency_path)
    df = summary_table(runs, teacher_map["map"], prepared_data.meta(prepared)["pool_size"], list(params.methods))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "summary.csv", df.to_csv(index=False).encode())
    md = to_markdown(df, teacher_map["map"], spent["train_queries"], teacher_map["test_queries"], efficiency)
    atomic_write_bytes(out / "summary.md", md.encode())
    pictures.save_png(pictures.map_vs_budget(df, teacher_map["map"]), out / "map_vs_budget.png")
    first_seed = params.seeds[0]
    curves = {(m, b): torch.load(models / f"{run_name(b, m, first_seed)}.pt", weights_only=True)["curve"]
              for m in params.methods for b in params.budgets}
    pictures.save_png(pictures.training_curves(curves), out / "training_curves.png")
    test = prepared_data.load_test_split(prepared)
    pictures.save_png(_gallery(test, _read(galleries / "teacher.json"), f"teacher (mAP {teacher_map['map']:.3f})"),
                      out / "gallery" / "teacher.png")
    for name, metrics in zip(cells, runs):
        if metrics["seed"] == first_seed:
            title = f"student {name} (mAP {metrics['map']:.3f})"
            pictures.save_png(_gallery(test, _read(galleries / "students" / f"{name}.json"), title),
                              out / "gallery" / f"{name}.png")

    tracking.connect(Path.cwd())
    tag = tracking.pipeline_tag(params_path)
    _log_metrics(teacher / "mlflow.json", "teacher", teacher_map, teacher_metrics, out / "gallery" / "teacher.png", tag)
    for name, metrics in zip(cells, runs):
        who = f"B={metrics['budget']} {metrics['method']} seed {metrics['seed']} {params.student.arch}-{params.student.dim}d"
        _log_metrics(models / f"{name}.mlflow.json", who, metrics, students / f"{name}.json",
                     out / "gallery" / f"{name}.png", tag)
    registered = _register_best(df, models, first_seed)
    with mlflow.start_run(run_name="report", tags={"role": "report", **tag}):
        mlflow.log_params({"methods": ",".join(params.methods), "seeds": ",".join(map(str, params.seeds)),
                           "budgets": ",".join(map(str, params.budgets))})
        mlflow.log_metrics({k: v for k, v in {"train_queries": spent["train_queries"],
                                              "test_queries": teacher_map["test_queries"],
                                              "throughput_ratio": efficiency["throughput_ratio"]}.items()
                            if v is not None})
        for name in ("summary.csv", "summary.md", "map_vs_budget.png", "training_curves.png"):
            mlflow.log_artifact(str(out / name))
        mlflow.log_artifacts(str(out / "gallery"), artifact_path="gallery")
    click.echo(md)
    click.echo("registered: " + ", ".join(registered))


def _log_metrics(run_ref: Path, who: str, metrics: dict, path: Path, gallery: Path, tag: dict) -> None:
    """The evaluate stage's metrics and the model's gallery into the model's own MLflow run, which is
    renamed to say what it is and how well it retrieves."""
    from pipeline import tracking

    with tracking.reopen_run(run_ref, who):
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlflow.log_artifact(str(path), artifact_path="metrics")
        if gallery.exists():
            mlflow.log_artifact(str(gallery))
        mlflow.set_tags({"mlflow.runName": tracking.display_name(who, metrics), **tag})


def _register_best(df, models: Path, seed: int) -> list[str]:
    """Each budget's best method (its first seed's student) as a registered model version, once."""
    from pipeline import tracking

    client = mlflow.tracking.MlflowClient()
    done = []
    for budget, rows in df.groupby("budget"):
        best = rows.loc[rows["map_mean"].idxmax(), "method"]
        run_id = tracking.read_run_ref(models / f"{run_name(budget, best, seed)}.mlflow.json")
        name = REGISTERED.format(budget=budget)
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
