"""One student's evaluation: retrieval mAP (revisited protocol) on the test split, and, for a student
that learned a projection to the teacher's space (the regression term: ``regression``,
``derd-plus``), the way such students are deployed too: its projected query descriptors against
the database as the teacher described it once (asymmetric retrieval)."""

from __future__ import annotations

import numpy as np
import torch


def cell_labels(budget, method: str, size: str, seed: int) -> dict:
    """What the report calls a cell of pipeline.grid: the full-supervision baseline is budget "all",
    the ceiling budget "pool" (its method ``<method>-ceiling``)."""
    if budget is None:
        return dict(budget="all", method="supervised-full", size=size, seed=seed)
    if budget == "pool":
        return dict(budget="pool", method=f"{method}-ceiling", size=size, seed=seed)
    return dict(budget=budget, method=method, size=size, seed=seed)


def evaluate_student(
    model, projection: dict | None, test, teacher_db, image_size: int, ep, device: torch.device
) -> tuple[dict, np.ndarray]:
    """(metrics, ranks) of one student on ``test`` (a prepared test split), ``ep`` the eval params.
    ``teacher_db``: the teacher's database descriptors (read only for a student with a projection)."""
    from pipeline.data.images import array_chunks
    from pipeline.models.inference import describe
    from pipeline.retrieval.metrics import search_and_score

    bs = ep.batch_size
    q_desc, db_desc = (
        np.concatenate([describe(model, a, bs, device) for a in array_chunks(images, image_size, 4 * bs)])
        for images in (test.query_images, test.db_images)
    )
    metrics, ranks = search_and_score(q_desc, db_desc, test.gnd, ep)
    if projection is not None:  # queries by the student, the database as the teacher described it
        w, b = projection["weight"].numpy(), projection["bias"].numpy()
        projected = q_desc @ w.T + b
        projected /= np.linalg.norm(projected, axis=1, keepdims=True)
        asym, _ = search_and_score(projected.astype(np.float32), teacher_db(), test.gnd, ep)
        metrics.update({f"asym_{k}": v for k, v in asym.items()})
    metrics["queries"] = len(q_desc)
    return metrics, ranks
