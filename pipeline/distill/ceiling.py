"""The distillation ceiling: what a student reaches when the teacher has answered every training-pool
image. It tells a user how much of what distillation can reach each budget buys; it is reported,
never recommended, and its teacher calls carry their own purpose on the ledger ("ceiling").

The same answers serve the lever claim "selection beats random": random subsets are read from them,
so that claim costs no query of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import ArtifactError, ParamsError

PURPOSE = "ceiling"


def enabled(run: str, queried_teacher: bool) -> bool:
    """``auto``: only for a teacher built here (its calls cost compute, not money)."""
    return run == "true" or (run == "auto" and not queried_teacher)


def skipped_reason(path: Path) -> str | None:
    """Why the pool's answers were not asked for, or None when they were."""
    with np.load(path) as z:
        return str(z["skipped"]) if "skipped" in z.files and str(z["skipped"]) else None


def answers_for(path: Path, indices: np.ndarray) -> np.ndarray:
    """The teacher's answers for pool ``indices``, from a file of (indices, descriptors) rows."""
    reason = skipped_reason(path)
    if reason:
        raise ParamsError(f"{path} holds no answers ({reason})")
    with np.load(path) as z:
        have, descriptors = z["indices"], z["descriptors"]
    order = np.argsort(have, kind="stable")
    pos = np.searchsorted(have[order], indices)
    pos = np.minimum(pos, len(have) - 1)
    found = have[order][pos] == indices
    if not found.all():
        raise ArtifactError(
            f"{path} has no teacher answer for {int((~found).sum())} of the {len(indices)} pool images "
            "asked for: rerun `dvc repro dump-pool`"
        )
    return descriptors[order[pos]].astype(np.float32)
