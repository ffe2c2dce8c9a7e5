"""The revisited Oxford/Paris protocol: known answers and the benchmark's own test vectors."""

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.retrieval.metrics import retrieval_metrics
from pipeline.retrieval.revisited import _positive_ranks, average_precision, evaluate, evaluate_protocol, summarize

VECTORS = json.loads((Path(__file__).parent / "data" / "eval_vectors.json").read_text())["cases"]


def test_known_answer_trapezoid_ap_with_junk():
    ranking, ok, junk = np.arange(6), np.array([0, 3]), np.array([1])
    pos = _positive_ranks(ranking, ok, junk)
    assert pos.tolist() == [0, 2]  # junk removed before ranks are counted
    assert average_precision(pos, len(ok)) == pytest.approx(0.791667, abs=1e-6)
    # plain (non-interpolated) AP would be (1/1 + 2/3) / 2 = 0.8333: the protocol is not that
    assert average_precision(pos, len(ok)) != pytest.approx(0.8333, abs=1e-3)


def test_positive_never_retrieved_counts_as_zero():
    # two positives, only one in the (truncated) ranking: AP is halved
    assert average_precision(np.array([0]), 2) == pytest.approx(0.5)


@pytest.mark.parametrize("case", range(len(VECTORS)))
@pytest.mark.parametrize("protocol", ["easy", "medium", "hard"])
def test_published_vectors(case, protocol):
    c = VECTORS[case]
    ranks = np.array(c["ranks_columns_are_queries"]).T  # -> (n_queries, n_ranked)
    result = evaluate_protocol(ranks, c["gnd"], protocol, kappas=(1, 5, 10))
    expected = c["expected"][protocol]
    assert result.map == pytest.approx(expected["map"], abs=1e-9)
    assert [result.mp_at_k[k] for k in (1, 5, 10)] == pytest.approx(expected["mp@1,5,10"], abs=1e-9)


def test_protocols_choose_positives_and_junk():
    ranking = np.array([[0, 1, 2, 3]])
    gnd = [{"easy": [2], "hard": [0], "junk": [1]}]
    res = evaluate(ranking, gnd)
    # easy: ok={2}, junk={1,0} -> positive at rank 0 after removing two junk images
    assert res["easy"].map == pytest.approx(1.0)
    # medium: ok={0,2}, junk={1} -> ranks [0, 1]
    assert res["medium"].map == pytest.approx(1.0)
    # hard: ok={0}, junk={1,2} -> rank 0
    assert res["hard"].map == pytest.approx(1.0)
    ranking = np.array([[3, 1, 2, 0]])
    res = evaluate(ranking, gnd)
    assert res["hard"].map == pytest.approx(average_precision(np.array([1]), 1))  # 3 first, junk 1 and 2 removed


def test_query_without_positives_is_left_out_of_the_mean():
    ranks = np.array([[0, 1], [1, 0]])
    gnd = [{"easy": [0], "hard": [], "junk": []}, {"easy": [], "hard": [], "junk": []}]
    res = evaluate_protocol(ranks, gnd, "medium")
    assert res.map == pytest.approx(1.0)
    assert np.isnan(res.aps[1])
    assert np.isnan(evaluate_protocol(ranks, gnd, "hard").map)  # nobody has hard positives
    flat = summarize(evaluate(ranks, gnd))
    assert "map_hard" not in flat and flat["map"] == flat["map_medium"] == pytest.approx(1.0)


def test_faiss_search_end_to_end_class_level():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16, dtype=np.float32)
    db_labels = np.repeat(np.arange(4), 10)
    q_labels = np.arange(4)
    db = centres[db_labels] + 0.05 * rng.standard_normal((40, 16)).astype(np.float32)
    q = centres[q_labels]
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    gnd = [{"easy": np.flatnonzero(db_labels == c), "hard": [], "junk": []} for c in q_labels]
    assert retrieval_metrics(q, db, gnd)["map"] == pytest.approx(1.0)
    shuffled = retrieval_metrics(q, db[rng.permutation(40)], gnd)["map"]
    assert shuffled < 0.6  # ground truth no longer matches: the metric notices
