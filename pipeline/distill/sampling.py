"""Nested budget subsets: one seeded permutation of the pool, each budget takes a prefix of it.

Nesting is what lets one teacher dump (of the largest subset) serve every budget.
"""
from __future__ import annotations

import numpy as np


def nested_subset(pool_size: int, budget: int, seed: int) -> np.ndarray:
    if not 0 < budget <= pool_size:
        raise ValueError(f"budget {budget} must be between 1 and the pool size {pool_size}")
    return np.random.default_rng(seed).permutation(pool_size)[:budget].astype(np.int64)
