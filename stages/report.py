"""report: the method x budget table (CSV, Markdown) and the mAP-vs-budget plot; also in MLflow."""
import json

import click
import mlflow

from stages.common import ROOT, load, run_name, stage

OUT = ROOT / "reports"


def _log_metrics(run_ref, run_name: str, metrics: dict, path) -> None:
    """The evaluate stage's metrics into the model's own MLflow run."""
    from pipeline import tracking

    with tracking.reopen_run(run_ref, run_name):
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlflow.log_artifact(str(path), artifact_path="metrics")


def _read(path):
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro` to make it")
    return json.loads(path.read_text())


@click.command()
@stage
def report():
    from pipeline import tracking
    from pipeline.data import prepared
    from pipeline.io import atomic_write_bytes
    from pipeline.report import plot_map_vs_budget, summary_table, to_markdown

    params = load()
    cells = [run_name(b, m, s) for m in params.methods for b in params.budgets for s in params.seeds]
    runs = [_read(ROOT / f"metrics/students/{name}.json") for name in cells]
    teacher = _read(ROOT / "metrics/teacher.json")
    queries = _read(ROOT / "metrics/queries.json")
    efficiency = _read(ROOT / "metrics/efficiency.json")
    df = summary_table(runs, teacher["map"], prepared.meta(ROOT / "data/prepared")["pool_size"], list(params.methods))
    OUT.mkdir(exist_ok=True)
    atomic_write_bytes(OUT / "summary.csv", df.to_csv(index=False).encode())
    md = to_markdown(df, teacher["map"], queries["train_queries"], teacher["test_queries"], efficiency)
    atomic_write_bytes(OUT / "summary.md", md.encode())
    plot_map_vs_budget(df, teacher["map"], OUT / "map_vs_budget.png")
    tracking.connect(ROOT)
    _log_metrics(ROOT / "models/teacher.mlflow.json", "teacher", teacher, ROOT / "metrics/teacher.json")
    for name, metrics in zip(cells, runs):
        _log_metrics(ROOT / f"models/students/{name}.mlflow.json", f"student-{name}", metrics,
                     ROOT / f"metrics/students/{name}.json")
    with mlflow.start_run(run_name="report", tags={"role": "report"}):
        mlflow.log_params({"methods": ",".join(params.methods), "seeds": ",".join(map(str, params.seeds)),
                           "budgets": ",".join(map(str, params.budgets))})
        mlflow.log_metrics({"train_queries": queries["train_queries"], "test_queries": teacher["test_queries"],
                            "throughput_ratio": efficiency["throughput_ratio"]})
        for name in ("summary.csv", "summary.md", "map_vs_budget.png"):
            mlflow.log_artifact(str(OUT / name))
    click.echo(md)


if __name__ == "__main__":
    report()
