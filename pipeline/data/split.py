"""Turn a labelled test set into a class-level retrieval benchmark in the revisited ``gnd`` form."""

from __future__ import annotations

import numpy as np

from pipeline.errors import ParamsError


def split_queries(n_test: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of test indices into queries and database (a query is never in the database)."""
    if not 0 < n_queries < n_test:
        raise ParamsError(f"'data.n_queries' must be between 1 and {n_test - 1} (the test set has {n_test} images)")
    order = np.random.default_rng(seed).permutation(n_test)
    return np.sort(order[:n_queries]), np.sort(order[n_queries:])


def class_level_gnd(query_labels: np.ndarray, db_labels: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Per query: ``easy`` = database images of the same class; no hard, no junk images."""
    empty = np.zeros(0, dtype=np.int64)
    by_class = {c: np.flatnonzero(db_labels == c) for c in np.unique(db_labels)}
    return [{"easy": by_class.get(c, empty), "hard": empty, "junk": empty} for c in query_labels]
