"""track: the run's outputs as MLflow records, one per evaluated model per configuration (see
pipeline/records.py), and each budget's best student registered. It reads only files DVC keeps, so
outputs restored from DVC's run cache are recorded like fresh ones; records already in the store
are found and kept, never rewritten."""

import json
from pathlib import Path

import click

from stages.common import load, params_option, path_option, stage


def _exists(path: Path) -> Path:
    from pipeline.errors import ArtifactError

    if not path.exists():
        raise ArtifactError(f"{path} not found: run `dvc repro` to make it")
    return path


def _read(path: Path) -> dict:
    return json.loads(_exists(path).read_text())


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

    from pipeline import records, tracking
    from pipeline.grid import grid, run_name
    from pipeline.io import file_sha256

    params = load(params_path)
    config, settings = tracking.workspace_configuration(params, code)
    efficiency, spent = _read(efficiency_path), _read(queries)
    summary = pd.read_csv(_exists(reports / "summary.csv"))
    exp_id = tracking.connect(Path.cwd())
    have = tracking.recorded(exp_id, config)
    made, cells = 0, {}
    for cell in grid(params).every:
        name = run_name(*cell)
        m = _read(students / f"{name}.json")
        if "skipped" in m:
            continue
        checkpoint = models / f"{name}.pt"
        digest = file_sha256(checkpoint)
        key = records.record_key(name, digest, file_sha256(students / f"{name}.json"), file_sha256(efficiency_path))
        if key in have:
            cells[cell] = have[key].info.run_id
            continue
        import torch

        budget, method, size, seed = cell
        cost = efficiency["sizes"][size]
        who = f"B={m['budget']} {m['method']} seed {seed} {size} {cost['arch']}-{cost['dim']}d"
        e = records.Evaluated(
            name,
            who,
            {**m, "flops_per_image": cost["flops_per_image"], "descriptors_per_second": cost["images_per_second"]},
            key,
            (students / f"{name}.json", reports / "gallery" / f"{name}.png"),
        )
        described = {None: "labelled pool (all)", "pool": "training pool (every image answered: the ceiling)"}
        cells[cell] = records.record_student(
            e,
            config,
            settings,
            method if method in params.method else params.recommended,
            size,
            torch.load(checkpoint, map_location="cpu", weights_only=True),
            digest[:16],
            described.get(budget, f"pool subset B={budget}"),
        )
        made += 1

    teacher_map = _read(teacher_metrics)
    key = records.record_key("teacher", file_sha256(teacher / "card.json"), file_sha256(teacher_metrics))
    if key not in have:
        card = _read(teacher / "card.json")
        records.record_teacher(
            records.Evaluated(
                "teacher", "teacher", teacher_map, key, (teacher_metrics, reports / "gallery" / "teacher.png")
            ),
            config,
            settings,
            card,
            _read(teacher_training),
        )
        made += 1
    shown = [
        reports / n
        for n in (
            "summary.csv",
            "frontier.csv",
            "summary.md",
            "claims.md",
            "map_vs_budget.png",
            "frontier.png",
            "training_curves.png",
        )
    ]
    key = records.record_key("report", *(file_sha256(p) for p in shown[:4]))
    if key not in have:
        figures = {
            "train_queries": spent["train_queries"],
            "test_queries": teacher_map["test_queries"],
            "throughput_ratio": efficiency.get("throughput_ratio"),
            "throughput_ratio_min": efficiency.get("throughput_ratio_min"),
            "throughput_ratio_max": efficiency.get("throughput_ratio_max"),
        }
        records.record_report(
            records.Evaluated(
                "report",
                f"{len(cells)} students",
                {k: v for k, v in figures.items() if v is not None},
                key,
                (*shown, reports / "gallery"),
            ),
            config,
            settings,
        )
        made += 1

    registered = _register_best(params, config, summary, cells, models, prepared)
    click.echo(
        f"MLflow ({tracking.tracking_uri(Path.cwd())}): configuration {config}: {made} new records, "
        f"{len(cells) + 2 - made} already there; registered: {', '.join(registered)}"
    )
    click.echo(f"see this configuration's runs: `derd ui` (filter: tags.config = '{config}')")


def _register_best(params, config: str, summary, cells: dict, models: Path, prepared: Path) -> list[str]:
    """Each budget's best method as the report marks it (its first seed's student, at the size
    ``student``), registered."""
    from pipeline import records
    from pipeline.checkpoint import load_model
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.grid import run_name

    contenders = summary[summary["method"].isin([params.recommended, *params.methods])]
    test = prepared_data.load_test_split(prepared)
    example = student_arrays(test.query_images, params.data.image_size, [0, 1])  # the models' input example
    done = []
    for budget, rows in contenders.groupby("budget"):
        marked = rows[rows["best"].astype(bool)]
        best = (marked if len(marked) else rows.loc[[rows["map_mean"].idxmax()]])["method"].iloc[0]
        cell = (int(budget), best, params.student, params.seeds[0])
        if cell not in cells:
            continue
        path = models / f"{run_name(*cell)}.pt"
        done.append(records.register(cells[cell], budget, config, lambda: load_model(path), example) + f" ({best})")
    return done


if __name__ == "__main__":
    track()
