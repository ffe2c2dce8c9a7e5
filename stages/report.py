"""report: summary.csv, summary.md and map_vs_budget.png from every metrics file; also in MLflow."""
import json

import click
import mlflow

from stages.common import ROOT, setup, stage

OUT = ROOT / "reports"


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

    params, _ = setup()
    students = {b: _read(ROOT / f"metrics/students/{b}.json") for b in params.budgets}
    teacher = _read(ROOT / "metrics/teacher.json")
    queries = _read(ROOT / "metrics/queries.json")
    df = summary_table(students, teacher, prepared.meta(ROOT / "data/prepared")["pool_size"])
    OUT.mkdir(exist_ok=True)
    atomic_write_bytes(OUT / "summary.csv", df.to_csv(index=False).encode())
    atomic_write_bytes(OUT / "summary.md", to_markdown(df, queries["train_queries"], teacher["test_queries"]).encode())
    plot_map_vs_budget(df, OUT / "map_vs_budget.png")
    tracking.connect(ROOT)
    with mlflow.start_run(run_name="report", tags={"role": "report"}):
        mlflow.log_metrics({"train_queries": queries["train_queries"], "test_queries": teacher["test_queries"]})
        for name in ("summary.csv", "summary.md", "map_vs_budget.png"):
            mlflow.log_artifact(str(OUT / name))
    click.echo((OUT / "summary.md").read_text())


if __name__ == "__main__":
    report()
