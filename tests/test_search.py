"""Search: exact blocked ranking equals a plain matrix product and sort, with bounded memory, on
float16 memory-mapped databases too; the IVF-PQ index's recall is measured against it."""

import numpy as np
import pytest

from pipeline.retrieval.search import ivfpq_ranks, rank_database, recall_at, scores


def data(n=3000, q=40, d=64, seed=0):
    rng = np.random.default_rng(seed)
    db = rng.standard_normal((n, d)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    queries = db[rng.choice(n, q, replace=False)] + 0.3 * rng.standard_normal((q, d)).astype(np.float32)
    return db, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def test_blocked_ranking_equals_matrix_product_and_sort():
    db, q = data()
    s = q.astype(np.float64) @ db.T.astype(np.float64)
    want = np.argsort(-s, axis=1, kind="stable")
    for got in (rank_database(db, q, block_bytes=64 * 1024), rank_database(db, q, k=25, block_bytes=64 * 1024)):
        k = got.shape[1]  # the same scores in the same order (items whose scores tie within float32 may swap)
        assert np.allclose(np.take_along_axis(s, got, 1), np.take_along_axis(s, want[:, :k], 1), atol=1e-6)
        assert np.mean(got == want[:, :k]) > 0.99


def test_a_float16_memory_mapped_database_is_read_in_blocks(tmp_path):
    db, q = data()
    path = tmp_path / "db.npy"
    np.save(path, db.astype(np.float16))
    mapped = np.load(path, mmap_mode="r")
    assert np.allclose(
        scores(q, mapped, block_bytes=32 * 1024), q @ db.astype(np.float16).astype(np.float32).T, atol=1e-6
    )
    ranks = rank_database(mapped, q, k=10, block_bytes=32 * 1024)
    exact = rank_database(db, q, k=10)
    assert recall_at(ranks, exact, 10) > 0.95  # float16 storage moves only near-ties


def test_ivfpq_recall_is_measured_against_exact_search():
    db, q = data(n=5000)
    exact = rank_database(db, q, k=100)
    approx = ivfpq_ranks(db, q, k=100, nlist=16, m=16, nprobe=16)
    recall = recall_at(approx, exact, 100)
    assert 0.2 < recall < 1.0  # compressed: close, not exact
    assert recall_at(exact, exact, 100) == 1.0


def test_slots_an_ivfpq_index_leaves_empty_are_not_results():
    """Probing few lists can return fewer than k ids (faiss pads with -1): mAP stays that of the ids
    it did return, never above 1."""
    from pipeline.retrieval.revisited import evaluate_protocol

    db, q = data(n=2000, q=5)
    approx = ivfpq_ranks(db, q, k=1000, nlist=64, m=16, nprobe=2)
    assert (approx == -1).any()  # 2 of 64 lists hold far fewer than 1000 descriptors
    gnd = [{"easy": np.array([int(row[0]), len(db) - 1]), "hard": [], "junk": []} for row in approx]
    result = evaluate_protocol(approx, gnd, "easy")
    for row, g, ap in zip(approx, gnd, result.aps):
        kept = row[row >= 0]
        found = np.flatnonzero(np.isin(kept, g["easy"]))  # ranks of the positives among the returned ids
        want = sum(((j / r if r else 1.0) + (j + 1) / (r + 1)) / 2 for j, r in enumerate(found)) / 2
        assert abs(ap - want) < 1e-12
    assert result.map <= 1.0


def test_more_ivf_lists_than_descriptors_is_refused_by_name():
    import pytest

    from pipeline.errors import ParamsError

    db, q = data(n=500, q=3)
    with pytest.raises(ParamsError, match="'eval.ivf_lists' = 1024 .* at most 500"):
        ivfpq_ranks(db, q, k=10, nlist=1024, m=16, nprobe=8)


def test_best_first_is_torchs_stable_descending_sort_ties_signed_zeros_and_nan_included():
    import torch

    from pipeline.retrieval.search import best_first

    def torchs(s):
        return torch.sort(torch.from_numpy(s), dim=1, descending=True, stable=True).indices.numpy()

    rng = np.random.default_rng(1)
    s = rng.standard_normal((37, 500)).astype(np.float32)
    s[:, 10] = s[:, 20] = s[:, 499]  # ties keep column order
    s[:, 3], s[:, 4], s[:, 5] = 0.0, -0.0, 0.0  # equal scores, whatever their sign bit
    s[:5, :50] = np.round(s[:5, :50], 1)  # many ties in a few rows
    s[31] = np.float32(-1.0)  # one row all tied
    tiny = np.finfo(np.float32).smallest_subnormal
    s[32, :8] = [np.inf, -np.inf, np.finfo(np.float32).max, -np.finfo(np.float32).max, tiny, -tiny, 2 * tiny, -0.0]
    want = torchs(s)
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):  # 37 rows in blocks of 16: two blocks at once on two threads
            torch.set_num_threads(n_threads)
            for rows in (1, 16, 64):
                assert (best_first(s, rows=rows) == want).all()
    finally:
        torch.set_num_threads(threads)
    assert (best_first(s[:, ::-1]) == torchs(np.ascontiguousarray(s[:, ::-1]))).all()  # a strided view

    wide = rng.standard_normal((2, 70_000)).astype(np.float32)  # columns beyond 16 bits keep every bit
    wide[:, 69_999] = wide[:, 3]  # a tie across the 65,536 line
    assert (best_first(wide) == torchs(wide)).all()

    s[30, 7], s[33, 9] = np.nan, -np.nan  # a broken descriptor's rows: torch's order (every NaN first)
    for rows in (1, 16):
        assert (best_first(s, rows=rows) == torchs(s)).all()
    with pytest.raises(TypeError, match="float32"):
        best_first(s.astype(np.float64))
    for wrong in (np.empty(s.shape, np.int16), np.empty((37, 501), np.int32)):
        with pytest.raises(TypeError, match="int32"):
            best_first(s, out=wrong)
    into = np.full((40, 500), -7, np.int32)  # a slice of a larger output, on two threads
    torch.set_num_threads(2)
    try:
        best_first(s, out=into[2:39])
    finally:
        torch.set_num_threads(threads)
    assert (into[2:39] == torchs(s)).all() and (into[[0, 1, 39]] == -7).all()
