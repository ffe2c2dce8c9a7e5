"""report: the method x budget table (CSV, Markdown) and the mAP-vs-budget plot; also in MLflow."""
import json

import click
import mlflow

from stages.common import ROOT, load, run_name, stage

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

    params = load()
    runs = [_read(ROOT / f"metrics/students/{run_name(b, m, s)}.json")
            for m in params.methods for b in params.budgets for s in params.seeds]
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
