"""track: the run's outputs as MLflow records, one per evaluated model per configuration (see
pipeline/records.py), and each budget's best student registered. It reads only files DVC keeps, so
outputs restored from DVC's run cache are recorded like fresh ones; records already in the store
are found and kept, never rewritten."""

from pathlib import Path

import click

from stages.common import load, params_option, path_option, stage


@click.command()
@params_option
@path_option("--students", help="folder of the students' metrics JSON")
@path_option("--models", help="folder of the students' checkpoints")
@path_option("--teacher", help="the teacher's folder (its card)")
@path_option("--teacher-metrics", help="the teacher's metrics JSON")
@path_option("--teacher-training", help="the teacher's training metrics JSON")
@path_option("--queries", help="the dump's query accounting JSON")
@path_option("--efficiency", "efficiency_path", help="the efficiency JSON")
@path_option("--prepared", help="the prepared dataset (an input example for the registered models)")
@path_option("--reports", help="the report's folder (tables, claims, pictures)")
@path_option("--code", help="the stages' code fingerprints (part of the configuration)")
@stage
def track(
    params_path: Path,
    students: Path,
    models: Path,
    teacher: Path,
    teacher_metrics: Path,
    teacher_training: Path,
    queries: Path,
    efficiency_path: Path,
    prepared: Path,
    reports: Path,
    code: Path,
):
    import pandas as pd

    from pipeline import tracking
    from pipeline.run_records import RunFiles, record_run, register_best

    params = load(params_path)
    config, settings = tracking.workspace_configuration(params, code)
    files = RunFiles(students, models, teacher, teacher_metrics, teacher_training, queries, efficiency_path, reports)
    files.check(params)
    summary = pd.read_csv(reports / "summary.csv")
    exp_id = tracking.connect(Path.cwd())
    cells, made = record_run(params, config, settings, tracking.recorded(exp_id, config), files)
    registered = register_best(params, config, summary, cells, models, prepared)
    click.echo(
        f"MLflow ({tracking.tracking_uri(Path.cwd())}): configuration {config}: {made} new records, "
        f"{len(cells) + 2 - made} already there; registered: {', '.join(registered)}"
    )
    click.echo(f"see this configuration's runs: `derd ui` (filter: tags.config = '{config}')")


if __name__ == "__main__":
    track()
