"""report: the method x budget table (CSV, Markdown), the claims, and the pictures (mAP vs budget, the
size-quality frontier, training curves, a retrieval gallery per model). The ``track`` stage puts them
in MLflow."""

import json
from pathlib import Path

import click

from pipeline.grid import student_path
from stages.common import load, params_option, path_option, run_name, stage


def _read(path: Path):
    from pipeline.errors import ArtifactError

    if not path.exists():
        raise ArtifactError(f"{path} not found: run `dvc repro` to make it")
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
@path_option("--models", help="folder of the students' checkpoints (their training curves)")
@path_option("--galleries", help="folder of the fixed queries' top results (students/, teacher.json)")
@path_option("--teacher-metrics", help="the teacher's metrics JSON")
@path_option("--queries", help="the dump's query accounting JSON")
@path_option("--efficiency", "efficiency_path", help="the efficiency JSON")
@path_option("--prepared", help="the prepared dataset (pool size, test images for the galleries)")
@path_option("--out", help="the reports folder")
@stage
def report(
    params_path: Path,
    students: Path,
    models: Path,
    galleries: Path,
    teacher_metrics: Path,
    queries: Path,
    efficiency_path: Path,
    prepared: Path,
    out: Path,
):
    import pandas as pd
    import torch

    from pipeline import pictures
    from pipeline.claims import claims, levers_not_measured
    from pipeline.claims import to_markdown as claims_markdown
    from pipeline.data import prepared as prepared_data
    from pipeline.grid import grid
    from pipeline.io import atomic_write_bytes
    from pipeline.params import LEVERS
    from pipeline.report import ceiling_markdown, frontier_markdown, size_table, summary_table, to_markdown

    params = load(params_path)
    rec = params.recommended
    main, sized, full, ceiling, levers = cells = grid(params)
    every = cells.every
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
    frontier = size_table(
        [metrics[c] for c in sized],
        [metrics[c] for c in full],
        efficiency,
        teacher_map["map"],
        [metrics[c] for c in ceiling if c in metrics],
        rec,
    )
    distillers = [m for m in (rec, *params.methods) if params.method[m].uses_teacher]
    found = claims(
        pd.DataFrame(list(metrics.values())),
        teacher_map["map"],
        pool_size,
        rec,
        params.student,
        efficiency,
        distillers,
        list(params.levers.budgets),
        contenders,
        levers_not_measured(params, skipped),
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "summary.csv", df.assign(size=params.student).round(4).to_csv(index=False).encode())
    atomic_write_bytes(out / "frontier.csv", frontier.round(4).to_csv(index=False).encode())
    md = to_markdown(df, teacher_map["map"], spent["train_queries"], teacher_map["test_queries"], efficiency)
    md += "\n" + frontier_markdown(frontier, rec)
    md += ceiling_markdown(frontier, df, rec, params.student, skipped)
    atomic_write_bytes(out / "summary.md", md.encode())
    atomic_write_bytes(out / "claims.md", claims_markdown(found, len(params.seeds)).encode())
    pictures.save_png(
        pictures.map_vs_budget(df[df["method"].isin(contenders)], teacher_map["map"]), out / "map_vs_budget.png"
    )
    pictures.save_png(
        pictures.frontier(
            frontier,
            teacher_map["map"],
            efficiency.get("teacher_flops_per_image"),
            efficiency.get("teacher_images_per_second"),
        ),
        out / "frontier.png",
    )
    first_seed = params.seeds[0]
    curves = {
        (m, b): torch.load(student_path(models, b, m, z, s), weights_only=True)["curve"]
        for b, m, z, s in main + sized
        if s == first_seed and z == params.student
    }
    pictures.save_png(pictures.training_curves(curves), out / "training_curves.png")
    test = prepared_data.load_test_split(prepared)
    pictures.save_png(
        _gallery(test, _read(galleries / "teacher.json"), f"teacher (mAP {teacher_map['map']:.3f})"),
        out / "gallery" / "teacher.png",
    )
    for cell in metrics:
        if cell[3] == first_seed:
            name = run_name(*cell)
            pictures.save_png(
                _gallery(
                    test,
                    _read(galleries / "students" / f"{name}.json"),
                    f"student {name} (mAP {metrics[cell]['map']:.3f})",
                ),
                out / "gallery" / f"{name}.png",
            )

    click.echo(md)
    click.echo((out / "claims.md").read_text())


if __name__ == "__main__":
    report()
