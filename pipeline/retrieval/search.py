"""Exact inner-product ranking with faiss (on the GPU when faiss-gpu and CUDA are present)."""
from __future__ import annotations

import faiss
import numpy as np


def rank_database(database: np.ndarray, queries: np.ndarray, k: int | None = None) -> np.ndarray:
    """Database indices ranked best-first for each query, shape (n_queries, k).

    Descriptors must be L2-normalised, so inner product is cosine similarity. ``k`` defaults to
    the whole database: the revisited protocol needs every positive's rank.
    """
    database = np.ascontiguousarray(database, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if database.ndim != 2 or queries.ndim != 2 or database.shape[1] != queries.shape[1]:
        raise ValueError(f"descriptor shapes do not match: database {database.shape}, queries {queries.shape}")
    k = database.shape[0] if k is None else min(k, database.shape[0])
    index = faiss.IndexFlatIP(database.shape[1])
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:  # pragma: no cover - GPU only
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        k = min(k, 2048)  # faiss-gpu's limit for k; positives past it count as not retrieved
    index.add(database)
    _, ranks = index.search(queries, k)
    return ranks
