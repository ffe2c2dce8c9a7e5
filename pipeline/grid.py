"""The experiment grid: every student a run trains, as ``(budget, method, size, seed)`` cells, and the
file stem each is saved under. dvc.yaml's matrices expand to exactly these (tests/test_grid.py), and
the report and the MLflow records read them from here.

``budget`` None is the full-supervision baseline, "pool" the distillation ceiling; a lever's cell is
named ``<recommended>-<lever>`` (e.g. ``derd-plus-nopool``)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pipeline.params import LEVERS


class Grid(NamedTuple):
    main: list[tuple]  # every method of `methods` at every budget, at the size `student`
    sized: list[tuple]  # the recommended method at every size of `sizes` (the frontier)
    full: list[tuple]  # the full-supervision baseline at every size
    ceiling: list[tuple]  # the recommended method with every training-pool image answered
    levers: list[tuple]  # the recommended method without each lever, at levers.budgets

    @property
    def every(self) -> list[tuple]:
        return self.main + self.sized + self.full + self.ceiling + self.levers


def grid(params) -> Grid:
    rec = params.recommended
    return Grid(
        main=[(b, m, params.student, s) for m in params.methods for b in params.budgets for s in params.seeds],
        sized=[(b, rec, z, s) for z in params.sizes for b in params.budgets for s in params.seeds],
        full=[(None, params.full.method, z, s) for z in params.sizes for s in params.seeds],
        ceiling=[("pool", rec, z, s) for z in params.sizes for s in params.ceiling.seeds],
        levers=[
            (b, f"{rec}-{lever}", params.student, s)
            for lever in LEVERS
            for b in params.levers.budgets
            for s in params.seeds
        ],
    )


def group_name(budget: int | str | None, method: str, size: str) -> str:
    """The students one training stage trains, every seed of one cell: the folder they are saved in."""
    if budget is None:
        return f"full-{size}"
    return f"ceiling-{size}" if budget == "pool" else f"{budget}-{method}-{size}"


def run_name(budget: int | str | None, method: str, size: str, seed: int) -> str:
    """The name of one student: its checkpoint's file stem (:func:`student_path`) and its metrics'
    (``metrics/students/<name>.json``)."""
    return f"{group_name(budget, method, size)}-{seed}"


def student_path(models: Path, budget: int | str | None, method: str, size: str, seed: int) -> Path:
    """``models/students/<group>/<name>.pt``: one folder per training stage, its DVC output."""
    return Path(models) / group_name(budget, method, size) / f"{run_name(budget, method, size, seed)}.pt"


def augmented_path(budget_folder: Path, seed: int) -> Path:
    """``data/augmented/<budget>/<seed>.npz``: one folder per budget, so that a training stage depends on
    its own budget's sets only."""
    return Path(budget_folder) / f"{seed}.npz"
