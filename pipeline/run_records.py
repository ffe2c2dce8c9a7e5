"""The run's outputs as MLflow records (pipeline/records.py makes each one): every student of the
grid, the teacher and the report, each found by its key and kept when the store has it already, and
each budget's best student registered. Reads only files DVC keeps, so outputs restored from DVC's run
cache are recorded like fresh ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline import records
from pipeline.errors import ArtifactError
from pipeline.grid import grid, run_name, student_path
from pipeline.io import file_sha256


@dataclass(frozen=True)
class RunFiles:
    """Where the track stage reads a run's outputs (dvc.yaml passes each)."""

    students: Path  # the students' metrics JSON
    models: Path  # the students' checkpoints
    teacher: Path  # the teacher's folder (its card)
    teacher_metrics: Path
    teacher_training: Path
    queries: Path  # the dump's query accounting
    efficiency: Path
    reports: Path

    def check(self, params) -> None:
        """Every file the records read is there, before any MLflow work: a missing one names itself.
        (A skipped cell's checkpoint is the marker the train stage leaves.)"""
        paths = [self.teacher / "card.json", self.teacher_metrics, self.teacher_training, self.queries]
        paths += [self.efficiency, *(self.reports / n for n in REPORT_FILES)]
        for cell in grid(params).every:
            paths += [self.students / f"{run_name(*cell)}.json", student_path(self.models, *cell)]
        for path in paths:
            existing(path)


REPORT_FILES = (  # what the report's record holds (the first four are its key)
    "summary.csv",
    "frontier.csv",
    "summary.md",
    "claims.md",
    "map_vs_budget.png",
    "frontier.png",
    "training_curves.png",
)


def existing(path: Path) -> Path:
    if not path.exists():
        raise ArtifactError(f"{path} not found: run `dvc repro` to make it")
    return path


def read_json(path: Path) -> dict:
    return json.loads(existing(path).read_text())


def record_run(params, config: str, settings: dict, have: dict, files: RunFiles) -> tuple[dict, int]:
    """Every record of the run not yet in the store (``have``: its records of this configuration by
    key): (each student cell's run id, how many records were made)."""
    students, models, teacher, reports = files.students, files.models, files.teacher, files.reports
    teacher_metrics, teacher_training, efficiency_path = files.teacher_metrics, files.teacher_training, files.efficiency
    efficiency, spent = read_json(efficiency_path), read_json(files.queries)
    made, cells = 0, {}
    for cell in grid(params).every:
        name = run_name(*cell)
        m = read_json(students / f"{name}.json")
        if "skipped" in m:
            continue
        checkpoint = student_path(models, *cell)
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

    teacher_map = read_json(teacher_metrics)
    key = records.record_key("teacher", file_sha256(teacher / "card.json"), file_sha256(teacher_metrics))
    if key not in have:
        card = read_json(teacher / "card.json")
        records.record_teacher(
            records.Evaluated(
                "teacher", "teacher", teacher_map, key, (teacher_metrics, reports / "gallery" / "teacher.png")
            ),
            config,
            settings,
            card,
            read_json(teacher_training),
        )
        made += 1
    shown = [reports / n for n in REPORT_FILES]
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

    return cells, made


def register_best(params, config: str, summary, cells: dict, models: Path, prepared: Path) -> list[str]:
    """Each budget's best method as the report marks it (its first seed's student, at the size
    ``student``), registered."""
    from pipeline.checkpoint import load_model
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays

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
        path = student_path(models, *cell)
        done.append(records.register(cells[cell], budget, config, lambda: load_model(path), example) + f" ({best})")
    return done
