"""Nested budget subsets: one seeded permutation of the pool, each budget takes a prefix of it.

Nesting is what lets one teacher dump (of the largest subset) serve every budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def nested_subset(pool_size: int, budget: int, seed: int) -> np.ndarray:
    if not 0 < budget <= pool_size:
        raise ValueError(f"budget {budget} must be between 1 and the pool size {pool_size}")
    return np.random.default_rng(seed).permutation(pool_size)[:budget].astype(np.int64)


def validation_split(pool_size: int, val_size: int, val_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool indices held out for choosing defaults: the *end* of the same permutation, so no budget
    subset (a prefix no longer than ``pool_size - val_size``) ever contains one. Returns (queries, database)."""
    if not 0 < val_queries < val_size < pool_size:
        raise ValueError(
            f"validation split: need 0 < val_queries ({val_queries}) < val_size ({val_size}) < pool size ({pool_size})"
        )
    held_out = np.random.default_rng(seed).permutation(pool_size)[pool_size - val_size :].astype(np.int64)
    return held_out[:val_queries], held_out[val_queries:]


def training_pool(pool_size: int, val_size: int, seed: int) -> np.ndarray:
    """Every pool index outside the validation split: what the full-supervision baseline learns from."""
    return np.sort(np.random.default_rng(seed).permutation(pool_size)[: pool_size - val_size]).astype(np.int64)


def nested_subsets(folder: Path, budgets) -> dict[int, np.ndarray]:
    """Each budget's subset file (``<budget>.npy`` in ``folder``), checked to be prefixes of the largest."""
    from pipeline.errors import ArtifactError

    subsets = {}
    for b in budgets:
        path = folder / f"{b}.npy"
        if not path.exists():
            raise ArtifactError(f"{path} not found: run `dvc repro sample` first")
        subsets[b] = np.load(path)
    largest = subsets[max(budgets)]
    for b, s in subsets.items():
        if not np.array_equal(s, largest[: len(s)]):
            raise ArtifactError(
                f"{folder / f'{b}.npy'} is not a prefix of the largest subset: rerun `dvc repro -f sample`"
            )
    return subsets
