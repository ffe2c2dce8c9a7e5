"""mAP and mP@k by the revisited Oxford/Paris protocol (Radenovic et al., CVPR 2018).

This mirrors the benchmark's published ``compute_map``: junk images are removed from the ranking,
AP integrates precision over *all* positives with the trapezoid rule (a positive never retrieved
adds nothing), and a query with no positives is left out of the means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROTOCOLS = {
    # name: (labels counted as positives, labels ignored as junk)
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


def average_precision(positive_ranks: np.ndarray, n_positives: int) -> float:
    """Trapezoid-rule AP from the 0-based, junk-free ranks of the retrieved positives (sorted)."""
    if n_positives == 0:
        return float("nan")
    r = np.asarray(positive_ranks, dtype=np.float64)
    j = np.arange(len(r), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision_before = np.where(r == 0, 1.0, j / r)
    precision_at = (j + 1) / (r + 1)
    return float(((precision_before + precision_at) / 2).sum() / n_positives)


def _positive_ranks(ranking: np.ndarray, ok: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """0-based positions of the positives in ``ranking`` once junk images are taken out."""
    size = int(max(ranking.max(initial=-1), ok.max(initial=-1), junk.max(initial=-1))) + 1
    is_ok, is_junk = np.zeros(size, bool), np.zeros(size, bool)
    is_ok[ok], is_junk[junk] = True, True  # boolean lookup: O(n) where np.isin sorts
    is_ok, is_junk = is_ok[ranking], is_junk[ranking]
    junk_before = np.cumsum(is_junk)
    pos = np.flatnonzero(is_ok)
    return pos - junk_before[pos]


@dataclass(frozen=True)
class ProtocolResult:
    map: float
    mp_at_k: dict[int, float]
    aps: np.ndarray  # per query; NaN where the query has no positives


def evaluate_protocol(ranks: np.ndarray, gnd: list[dict], protocol: str, kappas=(1, 5, 10)) -> ProtocolResult:
    """``ranks`` is (n_queries, n_ranked): database indices best-first, one row per query."""
    ok_keys, junk_keys = PROTOCOLS[protocol]
    if len(ranks) != len(gnd):
        raise ValueError(f"{len(ranks)} rankings for {len(gnd)} ground-truth queries")
    aps = np.full(len(gnd), np.nan)
    prs = np.full((len(gnd), len(kappas)), np.nan)
    for q, (ranking, g) in enumerate(zip(ranks, gnd)):
        ok = np.concatenate([np.asarray(g[k], dtype=np.int64).ravel() for k in ok_keys])
        if ok.size == 0:
            continue
        junk = np.concatenate([np.asarray(g[k], dtype=np.int64).ravel() for k in junk_keys])
        ranking = np.asarray(ranking)
        pos = _positive_ranks(ranking[ranking >= 0], ok, junk)  # -1: a slot an approximate index left empty
        aps[q] = average_precision(pos, ok.size)
        pos1 = pos + 1
        last = pos1.max() if pos1.size else 0
        for c, k in enumerate(kappas):
            cut = min(last, k)
            prs[q, c] = (pos1 <= cut).sum() / cut if cut > 0 else 0.0
    valid = ~np.isnan(aps)
    mean_ap = float(aps[valid].mean()) if valid.any() else float("nan")
    mp = {k: float(prs[valid, c].mean()) if valid.any() else float("nan") for c, k in enumerate(kappas)}
    return ProtocolResult(mean_ap, mp, aps)


def evaluate(ranks: np.ndarray, gnd: list[dict], kappas=(1, 5, 10)) -> dict[str, ProtocolResult]:
    return {name: evaluate_protocol(ranks, gnd, name, kappas) for name in PROTOCOLS}


def summarize(results: dict[str, ProtocolResult]) -> dict[str, float]:
    """Flat metrics for JSON/MLflow: ``map`` is the Medium protocol's; protocols with no positives
    anywhere (Hard on class-level data) are left out rather than reported as NaN."""
    out: dict[str, float] = {}
    for name, r in results.items():
        if np.isnan(r.map):
            continue
        out[f"map_{name}"] = r.map
        out.update({f"mp@{k}_{name}": v for k, v in r.mp_at_k.items()})
    out["map"] = out["map_medium"]
    return out
