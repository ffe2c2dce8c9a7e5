"""Which pool images to ask the teacher about, without labels, the teacher, or the held-out images.

``typical``: a greedy order that trades coverage against typicality. Each next image maximises
(its distance to the nearest image already chosen) x (its typicality: the percentile of its mean
similarity to its nearest neighbours). Pure farthest-point (k-center) order picks outliers first,
which hurts at tiny budgets; pure typicality picks near-duplicates. The order is computed once, so
every budget is a prefix of it: raising the largest budget asks only about new images.

Up to ``EXACT_UP_TO`` training-pool images (``sample.neighbours: auto``) every pair is compared. Beyond, that grows as
the pool squared (over an hour at 10^6 images on two cores), so the typicality comes from an
approximate nearest-neighbour index (faiss IVF) and the greedy order from :func:`blocked_order`, which
reads the pool once per 64 picks instead of once per pick and gives the same order up to float rounding
and ties. The index is seeded: the same subsets on one machine; another machine's float rounding can
assign an image to another list, where exact neighbours agree everywhere.
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


EXACT_UP_TO = (
    131_072  # sample.neighbours auto: every pair compared up to this many training-pool images (sfm120k's too)
)


def neighbours_for(setting: str, n: int) -> str:
    """``sample.neighbours`` resolved for a training pool of ``n`` images: exact or approximate."""
    if setting not in ("auto", "exact", "approximate"):
        raise ValueError(f"sample.neighbours {setting!r}: expected auto, exact or approximate")
    if setting != "auto":
        return setting
    return "exact" if n <= EXACT_UP_TO else "approximate"


def approximate_typicality(features: torch.Tensor, knn: int = 20, nprobe: int = 8, seed: int = 0) -> torch.Tensor:
    """:func:`typicality` from each row's ``knn`` nearest rows found by a faiss IVF index (about sqrt(n)
    lists, ``nprobe`` searched, trained on a seeded sample): near-linear in the pool, where the exact
    one compares every pair."""
    import faiss

    x = np.ascontiguousarray(features.numpy(), dtype=np.float32)
    n, d = x.shape
    k = min(knn, n - 1)
    if k < 1:
        return torch.ones(n)
    lists = max(1, min(round(n**0.5), n // 39))  # faiss wants 39 training points per list
    sample = np.sort(np.random.default_rng(seed).choice(n, min(n, 64 * lists), replace=False))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(x[sample])
    index.add(x)
    index.nprobe = min(nprobe, lists)
    density = np.empty(n, dtype=np.float32)
    for start in range(0, n, 65536):
        sims, ids = index.search(x[start : start + 65536], k + 1)
        found = ids[:, 1:] >= 0  # the first is the row itself; -1: fewer found in the lists searched
        density[start : start + len(sims)] = (np.where(found, sims[:, 1:], 0).sum(1)) / np.maximum(found.sum(1), 1)
    ranks = torch.from_numpy(density).argsort().argsort().float()
    return (ranks + 1) / n


def blocked_order(
    f: torch.Tensor, typ: torch.Tensor, count: int, block: int = 64, candidates: int = 4096
) -> np.ndarray:
    """The greedy order of :func:`one_pass_order`, reading the pool once per ``block``
    picks: between full passes only the ``candidates`` best-scored images have their distance to each
    new pick updated. A pick is taken when its updated score beats the best stale score outside them
    (stale scores only overestimate: distances to the chosen only shrink), else a full pass comes
    first. The same order as :func:`one_pass_order`, up to float rounding and ties (one product of many columns,
    not many of one)."""
    n = len(f)
    count = min(count, n)
    order = np.empty(count, dtype=np.int64)
    chosen = torch.zeros(n, dtype=torch.bool)
    dmin = torch.full((n,), float("inf"))
    pending: list[int] = []

    def full_pass():
        if pending:
            picked = f[torch.as_tensor(pending)]
            for start in range(0, n, 262_144):  # bounded memory: 262,144 x block distances at a time
                rows = slice(start, start + 262_144)
                dist = (2 - 2 * (f[rows] @ picked.T)).clamp_min(0).sqrt().amin(1)
                torch.minimum(dmin[rows], dist, out=dmin[rows])
            pending.clear()
        score = (dmin * typ).masked_fill(chosen, -1.0)
        top = score.topk(min(candidates + 1, n))
        cand = top.indices[:candidates].sort().values
        bound = float(top.values[candidates]) if n > candidates else -1.0
        return cand, f[cand], dmin[cand].clone(), bound

    if count == 0:
        return order
    order[0] = int(typ.argmax())  # the first pick: the most typical image (no distance yet)
    chosen[order[0]] = True
    pending.append(int(order[0]))
    cand, cand_f, cand_dmin, bound = full_pass()
    for k in range(1, count):
        fresh = False
        while True:
            s = (cand_dmin * typ[cand]).masked_fill(chosen[cand], -1.0)
            j = int(s.argmax())
            if fresh or float(s[j]) > bound:
                break
            cand, cand_f, cand_dmin, bound = full_pass()
            fresh = True
        pick = int(cand[j])
        order[k] = pick
        chosen[pick] = True
        pending.append(pick)
        if len(pending) == block:
            cand, cand_f, cand_dmin, bound = full_pass()
        else:
            torch.minimum(cand_dmin, (2 - 2 * (cand_f @ f[pick])).clamp_min(0).sqrt(), out=cand_dmin)
    return order


def typical_order(features: np.ndarray, count: int, knn: int = 20, neighbours: str = "exact") -> np.ndarray:
    """The first ``count`` positions (rows of ``features``) of the typical-coverage order; with
    ``neighbours="approximate"``, from :func:`approximate_typicality` and :func:`blocked_order`."""
    f = F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=1)
    if neighbours == "approximate":
        return blocked_order(f, approximate_typicality(f, knn), count)
    return one_pass_order(f, typicality(f, knn), count)


def one_pass_order(f: torch.Tensor, typ: torch.Tensor, count: int) -> np.ndarray:
    """The greedy order, one pass over the pool per pick: each next image maximises (its distance to the
    nearest image already chosen) x (its typicality); the first is the most typical."""
    n = len(f)
    count = min(count, n)
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
    *,
    neighbours: str,
) -> np.ndarray:
    """The budget's pool indices: a prefix of the seeded permutation (``random``), or of the typical
    order of the training pool in the view ``features`` ("pixels", or a size whose pretrained
    student in ``pretrained_dir`` embeds the images), its neighbours found as ``neighbours`` says
    (``sample.neighbours``)."""
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
    return candidates[typical_order(view, budget, neighbours=neighbours_for(neighbours, len(candidates)))]
