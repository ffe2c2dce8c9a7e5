"""Descriptors in, retrieval metrics out: the one evaluation path for teacher and students alike."""

from __future__ import annotations

import numpy as np

from pipeline.retrieval.revisited import evaluate, summarize
from pipeline.retrieval.search import ivfpq_ranks, rank_database, recall_at


def retrieval_metrics(query_desc: np.ndarray, db_desc: np.ndarray, gnd: list[dict], kappas=(1, 5, 10)) -> dict:
    return rank_and_score(query_desc, db_desc, gnd, kappas)[0]


def rank_and_score(
    query_desc: np.ndarray, db_desc: np.ndarray, gnd: list[dict], kappas=(1, 5, 10)
) -> tuple[dict, np.ndarray]:
    """The metrics and the rankings they came from (for galleries)."""
    ranks = rank_database(db_desc, query_desc)
    return summarize(evaluate(ranks, gnd, kappas)), ranks


def search_and_score(query_desc: np.ndarray, db_desc: np.ndarray, gnd: list[dict], ep) -> tuple[dict, np.ndarray]:
    """The evaluation of ``eval`` params ``ep``: exact ranking, or an IVF-PQ index's top
    ``ep.top_k`` (then also its recall@100 against the exact ranking, measured on up to
    ``ep.recall_queries`` queries)."""
    if ep.index == "exact":
        return rank_and_score(query_desc, db_desc, gnd, ep.kappas)
    ranks = ivfpq_ranks(db_desc, query_desc, ep.top_k, ep.ivf_lists, ep.pq_m, ep.nprobe)
    metrics = summarize(evaluate(ranks, gnd, ep.kappas))
    n = min(ep.recall_queries, len(query_desc))
    exact = rank_database(db_desc, query_desc[:n], k=100)
    metrics["recall@100_vs_exact"] = recall_at(ranks[:n], exact, 100)
    return metrics, ranks
