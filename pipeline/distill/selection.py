"""Which pool images to ask the teacher about, without labels, the teacher, or the held-out images.

``typical``: a greedy order that trades coverage against typicality. Each next image maximises
(its distance to the nearest image already chosen) x (its typicality: the percentile of its mean
similarity to its nearest neighbours). Pure farthest-point (k-center) order picks outliers first,
which hurts at tiny budgets; pure typicality picks near-duplicates. The order is computed once, so
every budget is a prefix of it: raising the largest budget asks only about new images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def pixel_features(images: np.ndarray, dim: int = 64, side: int = 32, chunk: int = 4096) -> np.ndarray:
    """The images' top ``dim`` principal components (pixels, centred), L2-normalised: a teacher-free view.
    Images larger than ``side`` x ``side`` are averaged down to it first (in chunks), so that photos
    never need a covariance of their full pixel count."""
    x = None
    for start in range(0, len(images), chunk):  # into one array: the pixels are held once, never twice
        part = torch.as_tensor(images[start : start + chunk], dtype=torch.float32) / 255.0
        part = part.unsqueeze(1) if part.ndim == 3 else part.permute(0, 3, 1, 2)
        if max(part.shape[2:]) > side:
            part = F.adaptive_avg_pool2d(part, side)
        if x is None:
            x = torch.empty(len(images), part[0].numel())
        x[start : start + len(part)] = part.flatten(1)
    x -= x.mean(0, keepdim=True)
    cov = x.T @ x / max(len(x) - 1, 1)
    _, vecs = torch.linalg.eigh(cov.double())
    basis = vecs[:, -min(dim, vecs.shape[1]) :].float()
    return F.normalize(x @ basis, dim=1).numpy()


def typicality(features: torch.Tensor, knn: int = 20, block: int = 4096, columns: int = 16384) -> torch.Tensor:
    """Percentile (0, 1] of each row's mean cosine similarity to its ``knn`` nearest other rows.

    Every pair is compared (n^2 d multiply-adds), ``block`` rows against ``columns`` columns at a time, so
    that memory stays flat as the pool grows: the ``knn + 1`` largest similarities of each column chunk
    are merged with those found so far. A row's similarities come out the same however the columns are
    cut (the blocks of rows are kept as they were), so its neighbours and its density do too."""
    n = len(features)
    k = min(knn, n - 1)
    if k < 1:
        return torch.ones(n)
    columns = max(columns, k + 1)
    density = torch.empty(n)
    for start in range(0, n, block):
        rows, top = features[start : start + block], None
        for first in range(0, n, columns):
            sims = rows @ features[first : first + columns].T
            best = sims.topk(min(k + 1, sims.shape[1]), dim=1).values
            top = best if top is None else torch.cat([top, best], 1).topk(k + 1, dim=1).values
        density[start : start + block] = top[:, 1:].mean(1)  # the first is the row itself
    ranks = density.argsort().argsort().float()
    return (ranks + 1) / n


def typical_order(features: np.ndarray, count: int, knn: int = 20) -> np.ndarray:
    """The first ``count`` positions (rows of ``features``) of the typical-coverage order."""
    f = F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=1)
    n = len(f)
    count = min(count, n)
    typ = typicality(f, knn)
    dmin = torch.full((n,), float("inf"))
    chosen = torch.zeros(n, dtype=torch.bool)
    order = np.empty(count, dtype=np.int64)
    for k in range(count):
        score = typ if k == 0 else dmin * typ
        score = score.masked_fill(chosen, -1.0)
        pick = int(score.argmax())
        order[k] = pick
        chosen[pick] = True
        dist = (2 - 2 * (f @ f[pick])).clamp_min(0).sqrt()
        dmin = torch.minimum(dmin, dist)
    return order


def choose_subset(
    strategy: str,
    features: str,
    pool,
    pool_size: int,
    budget: int,
    image_size: int,
    val_size: int,
    seed: int,
    pretrained_dir,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The budget's pool indices: a prefix of the seeded permutation (``random``), or of the typical
    order of the training pool in the view ``features`` ("pixels", or a size whose pretrained
    student in ``pretrained_dir`` embeds the images)."""
    from pipeline.distill.sampling import nested_subset, training_pool

    if strategy == "random":
        return nested_subset(pool_size, budget, seed)
    from pipeline.data.images import student_arrays

    candidates = training_pool(pool_size, val_size, seed)
    images = student_arrays(pool, image_size, candidates)
    if features == "pixels":
        view = pixel_features(images)
    else:
        from pipeline.checkpoint import load_model
        from pipeline.models.inference import describe

        device = torch.device(device)
        view = describe(load_model(pretrained_dir / f"{features}.pt", device), images, 1024, device)
    return candidates[typical_order(view, budget)]
