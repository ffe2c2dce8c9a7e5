"""The experiment grid: every student a run trains, as ``(budget, method, size, seed)`` cells, and the
file stem each is saved under. dvc.yaml's matrices expand to exactly these (tests/test_grid.py), and
the report and the MLflow records read them from here.

``budget`` None is the full-supervision baseline, "pool" the distillation ceiling; a lever's cell is
named ``<recommended>-<lever>`` (e.g. ``derd-plus-nopool``)."""

from __future__ import annotations

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


def run_name(budget: int | str | None, method: str, size: str, seed: int) -> str:
    """The file stem of one student (``models/students/<name>.pt``, ``metrics/students/<name>.json``)."""
    if budget is None:
        return f"full-{size}-{seed}"
    return f"ceiling-{size}-{seed}" if budget == "pool" else f"{budget}-{method}-{size}-{seed}"
