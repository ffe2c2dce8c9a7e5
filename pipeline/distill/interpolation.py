"""Virtual samples by interpolation in the teacher's output space: more training targets, no queries.

A virtual sample is a triple ``(i, j, lam)`` of two subset positions and a mixing weight; its
teacher target is ``normalize(lam * t_i + (1 - lam) * t_j)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Triples:
    i: np.ndarray  # (K,) int64 positions in the subset
    j: np.ndarray  # (K,) int64
    lam: np.ndarray  # (K,) float32 in [0, 1]

    def __len__(self) -> int:
        return len(self.i)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def interpolate(descriptors: np.ndarray, triples: Triples, chunk: int = 1 << 16) -> np.ndarray:
    """The triples' targets, ``chunk`` at a time into one array: the intermediates stay small however many
    triples there are (each row is computed on its own, so the chunks do not change it)."""
    out = np.empty((len(triples), *descriptors.shape[1:]), np.float32)
    for s in range(0, len(triples), chunk):
        lam = triples.lam[s : s + chunk, None].astype(descriptors.dtype)
        out[s : s + chunk] = normalize_rows(
            lam * descriptors[triples.i[s : s + chunk]] + (1 - lam) * descriptors[triples.j[s : s + chunk]]
        )
    return out


def knn_partners(descriptors: np.ndarray, k: int) -> np.ndarray:
    """(n, k') nearest other subset members by teacher similarity, k' = min(k, n - 1)."""
    sims = descriptors @ descriptors.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(descriptors) - 1)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def sample_triples(
    descriptors: np.ndarray, ratio: float, alpha: float, pairing: str, knn: int, rng: np.random.Generator
) -> Triples:
    """``round(ratio * n)`` triples over the ``n`` subset members; ``lam ~ Beta(alpha, alpha)``."""
    n = len(descriptors)
    k = int(round(ratio * n)) if n > 1 else 0
    i = rng.integers(0, n, size=k)
    if pairing == "random":
        j = (i + rng.integers(1, n, size=k)) % n if k else np.zeros(0, np.int64)  # any other member
    elif pairing == "knn":
        partners = knn_partners(descriptors, knn)
        j = partners[i, rng.integers(0, partners.shape[1], size=k)] if k else np.zeros(0, np.int64)
    else:
        raise ValueError(f"unknown pairing {pairing!r}; use random or knn")
    lam = rng.beta(alpha, alpha, size=k).astype(np.float32)
    return Triples(i.astype(np.int64), np.asarray(j, dtype=np.int64), lam)


def virtual_samples(
    descriptors: np.ndarray, ratio: float, alpha: float, pairing: str, knn: int, seed: int, budget: int
) -> tuple[Triples, np.ndarray]:
    """The triples and interpolated targets of one (budget, seed) cell: the same wherever they are made."""
    triples = sample_triples(descriptors, ratio, alpha, pairing, knn, np.random.default_rng([seed, budget]))
    return triples, interpolate(descriptors, triples)
