"""Which pool images to ask the teacher about, without labels, the teacher, or the held-out images.

``typical``: a greedy order that trades coverage against typicality. Each next image maximises
(its distance to the nearest image already chosen) x (its typicality: the percentile of its mean
similarity to its nearest neighbours). Pure farthest-point (k-center) order picks outliers first,
which hurts at tiny budgets; pure typicality picks near-duplicates. The order is computed once, so
every budget is a prefix of it: raising the largest budget asks only about new images.

Up to ``EXACT_UP_TO`` training-pool images (``sample.neighbours: auto``) every pair is compared. Beyond, that grows as
the pool squared (over an hour at 10^6 images on two cores), so the typicality comes from an
approximate nearest-neighbour index (faiss IVF lists, each compared in one matrix product with the images
that search it) and the greedy order from :func:`blocked_order`, which
updates, once per 64 picks, only the images whose stale score could still make them a pick (instead of
the whole pool once per pick) and gives the same order up to float rounding and ties. The index is
seeded: the same subsets on one machine; another machine's float rounding can assign an image to
another list, where exact neighbours agree everywhere.
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
    return percentiles(density)


def percentiles(density: torch.Tensor) -> torch.Tensor:
    """Each value's percentile (0, 1] among ``density``: the typicality of the exact and approximate ways."""
    return (density.argsort().argsort().float() + 1) / len(density)


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


def ivf_index(x: np.ndarray, seed: int = 0):
    """A faiss IVF index (inner product) for the rows of ``x``, trained but empty: about sqrt(n) lists
    (k-means centroids of a seeded sample). Its coarse quantizer sends each row to its lists."""
    import faiss

    n, d = x.shape
    lists = max(1, min(round(n**0.5), n // 39))  # faiss wants 39 training points per list
    sample = np.sort(np.random.default_rng(seed).choice(n, min(n, 64 * lists), replace=False))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(x[sample])
    return index


def approximate_density(features: torch.Tensor, knn: int = 20, nprobe: int = 8, seed: int = 0) -> np.ndarray:
    """Each row's mean similarity to its ``knn`` nearest other rows among those in its ``nprobe`` nearest
    IVF lists (:func:`ivf_index`; a row lies in its nearest list); over the fewer found where its lists hold
    fewer, 0 where they hold only itself. What a faiss IVF search of every row finds, to float rounding
    (and to ties between list centres, which faiss breaks one way when it adds and another when it
    searches), but computed list by list: the rows that probe a list are compared with its members in
    one ``faiss.knn`` (matrix products in blocks), and each list's best merged into each row's running
    best. That reaches the BLAS speed that faiss's one-query-at-a-time scan does not (35.5 s against
    239 s at 10^6 rows of 128-d on two cores)."""
    import faiss

    x = np.ascontiguousarray(features.numpy(), dtype=np.float32)
    n = len(x)
    k = min(knn, n - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float32)
    index = ivf_index(x, seed)
    probes = min(nprobe, index.nlist)
    _, lists = index.quantizer.search(x, probes)  # each row's nearest lists, its own (nearest) first
    bounds = np.arange(index.nlist + 1)
    members = np.argsort(lists[:, 0], kind="stable")
    member_at = np.searchsorted(lists[members, 0], bounds)
    flat = lists.ravel()
    probing = np.argsort(flat, kind="stable")
    probe_at = np.searchsorted(flat[probing], bounds)
    probing //= probes  # (row, rank) pairs by list -> the rows
    best = np.full((n, k + 1), -np.inf, dtype=np.float32)  # each row's k + 1 largest so far, itself included
    for list_no in range(index.nlist):
        rows = probing[probe_at[list_no] : probe_at[list_no + 1]]
        inside = members[member_at[list_no] : member_at[list_no + 1]]
        if len(rows) == 0 or len(inside) == 0:
            continue
        sims, _ = faiss.knn(x[rows], x[inside], min(k + 1, len(inside)), metric=faiss.METRIC_INNER_PRODUCT)
        merged = np.concatenate([best[rows], sims], 1)
        best[rows] = -np.partition(-merged, k, axis=1)[:, : k + 1]
    found = np.isfinite(best)
    others = np.where(found, best, 0).sum(1, dtype=np.float64) - best.max(1)  # the largest: the row itself
    return (others / np.maximum(found.sum(1) - 1, 1)).astype(np.float32)


def approximate_typicality(features: torch.Tensor, knn: int = 20, nprobe: int = 8, seed: int = 0) -> torch.Tensor:
    """:func:`typicality` from each row's ``knn`` nearest rows in its ``nprobe`` nearest IVF lists
    (:func:`approximate_density`): near-linear in the pool, where the exact one compares every pair."""
    n = len(features)
    if min(knn, n - 1) < 1:
        return torch.ones(n)
    return percentiles(torch.from_numpy(approximate_density(features, knn, nprobe, seed)))


def _distance(similarity: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between unit vectors from their cosine similarity."""
    return (2 - 2 * similarity).clamp_min(0).sqrt()


def blocked_order(
    f: torch.Tensor,
    typ: torch.Tensor,
    count: int,
    block: int = 64,
    candidates: int = 4096,
    lead: int = 16384,
    passes: list[int] | None = None,
) -> np.ndarray:
    """The greedy order of :func:`one_pass_order` without a pass over the whole pool per pick.

    Each image keeps its largest similarity to the picks, and how many picks that covers. Between full
    passes (one per ``block`` picks) only the ``candidates`` best-scored images have their distance to
    each new pick updated. A full pass brings up to date only the ``lead`` images of best stale score (4x
    more while a stale score outside them could still reach the candidates): stale scores only
    overestimate (distances to the chosen only shrink), so the rest cannot be among the best. A pick is
    taken when its updated score beats the best score outside the candidates, else a full pass comes
    first. The same order as :func:`one_pass_order`, up to float rounding and ties (one product of many
    columns, not many of one); at 10^6 images a full pass updates a few percent of them. ``passes``, when
    given, gets how many images each full pass took by stale score (the chosen included)."""
    if block < 1 or candidates < 1:
        raise ValueError(f"blocked_order: block {block} and candidates {candidates} must be at least 1")
    n, d = f.shape
    count = min(count, n)
    order = np.empty(count, dtype=np.int64)
    if count == 0:
        return order
    chosen = torch.zeros(n, dtype=torch.bool)
    nearest = f.new_full((n,), float("-inf"))  # largest similarity to the first seen[i] picks
    seen = torch.zeros(n, dtype=torch.int64)
    picks = f.new_empty(count, d)
    lead = max(lead, candidates + 1)  # a pass can stop only beyond the candidates
    last_pass = 0

    def bring_up_to_date(rows: torch.Tensor, k: int) -> None:
        """``nearest`` of ``rows`` over the first ``k`` picks (each group from where it was left)."""
        behind, by_seen = seen[rows].sort()
        starts, sizes = torch.unique_consecutive(behind, return_counts=True)
        for start, group in zip(starts.tolist(), rows[by_seen].split(sizes.tolist())):
            if start >= k:
                continue
            cols = picks[start:k]
            step = max(1, min(2**16, 2**24 // len(cols)))  # bounded memory: rows copied, similarities
            for first in range(0, len(group), step):
                part = group[first : first + step]
                nearest[part] = torch.maximum(nearest[part], (f[part] @ cols.T).amax(1))
        seen[rows] = k

    def full_pass(k: int):
        nonlocal last_pass
        last_pass = k
        stale = (_distance(nearest) * typ).masked_fill(chosen, -1.0)
        m = min(lead, n)
        while True:
            top = stale.topk(min(m + 1, n))
            rows = top.indices[:m]
            bring_up_to_date(rows, k)
            updated = (_distance(nearest[rows]) * typ[rows]).masked_fill(chosen[rows], -1.0)
            best = updated.topk(min(candidates + 1, m))
            outside_stale = float(top.values[m]) if n > m else -1.0
            outside_fresh = float(best.values[candidates]) if m > candidates else -1.0
            if outside_stale <= outside_fresh or m == n:
                break
            m = min(4 * m, n)
        if passes is not None:
            passes.append(m)
        cand = rows[best.indices[:candidates]].sort().values
        return cand, f[cand], _distance(nearest[cand]), outside_fresh  # >= every stale score outside

    def take(k: int, pick: int) -> None:
        order[k], chosen[pick], picks[k] = pick, True, f[pick]

    take(0, int(typ.argmax()))  # the first pick: the most typical image (no distance yet)
    cand, cand_f, cand_dmin, bound = full_pass(1)
    for k in range(1, count):
        fresh = False
        while True:
            s = (cand_dmin * typ[cand]).masked_fill(chosen[cand], -1.0)
            j = int(s.argmax())
            if fresh or float(s[j]) > bound:
                break
            cand, cand_f, cand_dmin, bound = full_pass(k)
            fresh = True
        pick = int(cand[j])
        take(k, pick)
        if k + 1 - last_pass == block:
            cand, cand_f, cand_dmin, bound = full_pass(k + 1)
        else:
            torch.minimum(cand_dmin, _distance(cand_f @ f[pick]), out=cand_dmin)
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
