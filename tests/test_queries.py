"""The query gate and its ledger: counted, budgeted, never repeated, durable."""
import json

import numpy as np
import pytest

from pipeline.teacher.queries import BudgetExceeded, QueryGate, QueryStore


class CountingTeacher:
    """A black box that records every image it is sent."""

    def __init__(self, dim=4):
        self.seen: list[int] = []
        self.dim = dim

    def __call__(self, images):
        self.seen += [int(x) for x in images[:, 0, 0]]
        d = np.zeros((len(images), self.dim), np.float32)
        d[:, 0] = images[:, 0, 0]
        return d


def images_of(idx):
    return np.asarray(idx, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)


def gate(tmp_path, budget, teacher=None, sha="a" * 64, batch_size=3):
    teacher = teacher or CountingTeacher()
    return QueryGate(teacher, QueryStore(tmp_path / "store", sha, "train"), budget, batch_size), teacher


def test_counts_every_query_and_ledger_sums_to_total(tmp_path):
    g, t = gate(tmp_path, budget=10)
    out = g.describe(np.array([5, 1, 7, 2]), images_of)
    assert out[:, 0].tolist() == [5, 1, 7, 2]
    assert sorted(t.seen) == [1, 2, 5, 7]
    ledger = [json.loads(l) for l in (tmp_path / "store/ledger.jsonl").read_text().splitlines()]
    assert [e["count"] for e in ledger] == [3, 1] and ledger[-1]["total"] == 4 == g.store.count
    assert all(e["budget"] == 10 and e["purpose"] == "train" for e in ledger)


def test_never_queries_an_image_twice_even_after_reopening(tmp_path):
    g, t = gate(tmp_path, budget=10)
    g.describe(np.array([0, 1, 2]), images_of)
    g2, t2 = gate(tmp_path, budget=10)  # a new process: same store on disk
    out = g2.describe(np.array([2, 1, 0, 3]), images_of)
    assert t2.seen == [3]
    assert out[:, 0].tolist() == [2, 1, 0, 3]
    assert g2.store.count == 4


def test_refuses_past_the_budget_before_calling(tmp_path):
    g, t = gate(tmp_path, budget=4)
    g.describe(np.array([0, 1, 2]), images_of)
    with pytest.raises(BudgetExceeded, match="budget is 4 images"):
        g.describe(np.array([3, 4]), images_of)
    assert t.seen == [0, 1, 2]  # nothing was sent for the refused request
    assert g.store.count == 3
    g.describe(np.array([0, 3]), images_of)  # one new image still fits
    assert g.store.count == 4


def test_duplicate_request_is_an_error(tmp_path):
    g, t = gate(tmp_path, budget=10)
    with pytest.raises(ValueError, match="duplicate"):
        g.describe(np.array([1, 1]), images_of)
    assert t.seen == []


def test_new_teacher_gets_a_fresh_store_and_old_answers_are_kept(tmp_path):
    g, _ = gate(tmp_path, budget=5, sha="a" * 64)
    g.describe(np.array([0, 1]), images_of)
    g2, t2 = gate(tmp_path, budget=5, sha="b" * 64)
    assert g2.store.count == 0
    g2.describe(np.array([0, 1]), images_of)
    assert t2.seen == [0, 1]
    assert (tmp_path / f"store.teacher-{'a' * 12}" / "chunk-00000.npz").exists()


def test_chunk_without_ledger_line_is_recovered(tmp_path):
    g, _ = gate(tmp_path, budget=10)
    g.describe(np.array([0, 1, 2, 3]), images_of)
    ledger = tmp_path / "store/ledger.jsonl"
    ledger.write_text(ledger.read_text().splitlines()[0] + "\n")  # as if killed after the 2nd chunk's write
    store = QueryStore(tmp_path / "store", "a" * 64, "train")
    entries = store.ledger()
    assert len(entries) == 2 and entries[-1].total == 4 == store.count
