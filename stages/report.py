"""report: the method x budget table (CSV, Markdown) and the mAP-vs-budget plot; also in MLflow."""
import json
from pathlib import Path

import click
import mlflow

from stages.common import load, params_option, path_option, run_name, stage


def _log_metrics(run_ref: Path, name: str, metrics: dict, path: Path) -> None:
    """The evaluate stage's metrics into the model's own MLflow run."""
    from pipeline import tracking

    with tracking.reopen_run(run_ref, name):
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlflow.log_artifact(str(path), artifact_path="metrics")


def _read(path: Path):
    from pipeline.errors import DatasetError

    if not path.exists():
        raise DatasetError(f"{path} not found: run `dvc repro` to make it")
    return json.loads(path.read_text())


@click.command()
@params_option
@path_option("--students", help="folder of the students' metrics JSON")
@path_option("--models", help="folder of the students' checkpoints and MLflow run references")
@path_option("--teacher", help="the teacher's folder (its MLflow run reference)")
@path_option("--teacher-metrics", help="the teacher's metrics JSON")
@path_option("--queries", help="the dump's query accounting JSON")
@path_option("--efficiency", "efficiency_path", help="the efficiency JSON")
@path_option("--prepared", help="the prepared dataset (pool size)")
@path_option("--out", help="the reports folder")
@stage
def report(params_path: Path, students: Path, models: Path, teacher: Path, teacher_metrics: Path, queries: Path,
           efficiency_path: Path, prepared: Path, out: Path):
    from pipeline import tracking
    from pipeline.data import prepared as prepared_data
    from pipeline.io import atomic_write_bytes
    from pipeline.report import plot_map_vs_budget, summary_table, to_markdown

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
    plot_map_vs_budget(df, teacher_map["map"], out / "map_vs_budget.png")
    tracking.connect(Path.cwd())
    _log_metrics(teacher / "mlflow.json", "teacher", teacher_map, teacher_metrics)
    for name, metrics in zip(cells, runs):
        _log_metrics(models / f"{name}.mlflow.json", f"student-{name}", metrics, students / f"{name}.json")
    with mlflow.start_run(run_name="report", tags={"role": "report"}):
        mlflow.log_params({"methods": ",".join(params.methods), "seeds": ",".join(map(str, params.seeds)),
                           "budgets": ",".join(map(str, params.budgets))})
        mlflow.log_metrics({k: v for k, v in {"train_queries": spent["train_queries"],
                                              "test_queries": teacher_map["test_queries"],
                                              "throughput_ratio": efficiency["throughput_ratio"]}.items()
                            if v is not None})
        for name in ("summary.csv", "summary.md", "map_vs_budget.png"):
            mlflow.log_artifact(str(out / name))
    click.echo(md)


if __name__ == "__main__":
    report()
