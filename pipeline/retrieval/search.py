"""Exact inner-product ranking with faiss (on the GPU when faiss-gpu and CUDA are present)."""
from __future__ import annotations

import faiss
import numpy as np

GPU_MAX_K = 2048  # faiss-gpu's largest k for a flat index


def rank_database(database: np.ndarray, queries: np.ndarray, k: int | None = None) -> np.ndarray:
    """Database indices ranked best-first for each query, shape (n_queries, k).

    Descriptors must be L2-normalised, so inner product is cosine similarity. ``k`` defaults to
    the whole database: the revisited protocol needs every positive's rank. faiss-gpu is used
    when present and ``k`` is within its limit (2048); beyond it the CPU index keeps results exact.
    """
    database = np.ascontiguousarray(database, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if database.ndim != 2 or queries.ndim != 2 or database.shape[1] != queries.shape[1]:
        raise ValueError(f"descriptor shapes do not match: database {database.shape}, queries {queries.shape}")
    k = database.shape[0] if k is None else min(k, database.shape[0])
    index = faiss.IndexFlatIP(database.shape[1])
    if k <= GPU_MAX_K and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:  # pragma: no cover
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(database)
    _, ranks = index.search(queries, k)
    return ranks
