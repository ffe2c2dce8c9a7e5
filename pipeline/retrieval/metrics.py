"""Descriptors in, retrieval metrics out: the one evaluation path for teacher and students alike."""
from __future__ import annotations

import numpy as np

from pipeline.retrieval.revisited import evaluate, summarize
from pipeline.retrieval.search import rank_database


def retrieval_metrics(query_desc: np.ndarray, db_desc: np.ndarray, gnd: list[dict], kappas=(1, 5, 10)) -> dict:
    return rank_and_score(query_desc, db_desc, gnd, kappas)[0]


def rank_and_score(query_desc: np.ndarray, db_desc: np.ndarray, gnd: list[dict],
                   kappas=(1, 5, 10)) -> tuple[dict, np.ndarray]:
    """The metrics and the rankings they came from (for galleries)."""
    ranks = rank_database(db_desc, query_desc)
    return summarize(evaluate(ranks, gnd, kappas)), ranks
