"""Nested subsets and virtual samples: the free training data of the method."""

import numpy as np
import pytest

from pipeline.distill.interpolation import Triples, interpolate, knn_partners, normalize_rows, sample_triples
from pipeline.distill.sampling import nested_subset
from pipeline.distill.train import make_batch


def test_subsets_are_nested_seeded_and_distinct():
    small, large = nested_subset(1000, 10, seed=3), nested_subset(1000, 300, seed=3)
    assert np.array_equal(small, large[:10])
    assert len(np.unique(large)) == 300 and large.min() >= 0 and large.max() < 1000
    assert np.array_equal(large, nested_subset(1000, 300, seed=3))
    assert not np.array_equal(large, nested_subset(1000, 300, seed=4))


@pytest.mark.parametrize("budget", [0, -1, 1001])
def test_subset_budget_out_of_range(budget):
    with pytest.raises(ValueError, match="pool size 1000"):
        nested_subset(1000, budget, seed=0)


def unit(n, d, seed=0):
    return normalize_rows(np.random.default_rng(seed).standard_normal((n, d))).astype(np.float32)


def test_interpolated_targets_are_normalised_mixtures():
    t = unit(5, 8)
    tr = Triples(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([1.0, 0.0, 0.5], np.float32))
    v = interpolate(t, tr)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    assert np.allclose(v[0], t[0], atol=1e-6) and np.allclose(v[1], t[2], atol=1e-6)
    mid = (t[2] + t[3]) / np.linalg.norm(t[2] + t[3])
    assert np.allclose(v[2], mid, atol=1e-6)


def test_triples_count_range_and_determinism():
    t = unit(50, 8)
    a = sample_triples(t, 3.0, 0.4, "random", 5, np.random.default_rng(0))
    b = sample_triples(t, 3.0, 0.4, "random", 5, np.random.default_rng(0))
    assert len(a) == 150
    assert (a.i != a.j).all() and a.i.max() < 50 and a.j.max() < 50
    assert ((a.lam >= 0) & (a.lam <= 1)).all()
    assert np.array_equal(a.i, b.i) and np.array_equal(a.j, b.j) and np.array_equal(a.lam, b.lam)


def test_knn_pairing_uses_teacher_neighbours():
    t = normalize_rows(np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], np.float32))
    assert knn_partners(t, 1)[:, 0].tolist() == [1, 0, 3, 2]
    tr = sample_triples(t, 5.0, 1.0, "knn", 1, np.random.default_rng(0))
    assert all({int(i), int(j)} in ({0, 1}, {2, 3}) for i, j in zip(tr.i, tr.j))


def test_batch_holds_both_endpoints_of_each_virtual_sample():
    t = unit(500, 8)
    tr = sample_triples(t, 4.0, 0.4, "random", 5, np.random.default_rng(1))
    b = make_batch(500, tr, batch_size=64, virtual_per_batch=16, rng=np.random.default_rng(2))
    assert len(b.real) == 64 and len(np.unique(b.real)) == 64 and len(b.virtual) == 16
    assert np.array_equal(b.real[b.vi], tr.i[b.virtual]) and np.array_equal(b.real[b.vj], tr.j[b.virtual])


def test_batch_is_whole_subset_when_budget_is_small():
    tr = sample_triples(unit(10, 4), 4.0, 0.4, "random", 5, np.random.default_rng(1))
    b = make_batch(10, tr, batch_size=128, virtual_per_batch=64, rng=np.random.default_rng(2))
    assert sorted(b.real.tolist()) == list(range(10))


def test_the_subset_files_are_read_as_prefixes_of_the_largest_or_refused_by_name(tmp_path):
    from pipeline.distill.sampling import nested_subsets
    from pipeline.errors import ArtifactError

    order = np.array([7, 3, 9, 1, 4])
    np.save(tmp_path / "2.npy", order[:2])
    np.save(tmp_path / "5.npy", order)
    subsets = nested_subsets(tmp_path, [2, 5])
    assert subsets[2].tolist() == [7, 3] and subsets[5].tolist() == order.tolist()
    with pytest.raises(ArtifactError, match=r"3.npy not found: run `dvc repro sample`"):
        nested_subsets(tmp_path, [2, 3, 5])
    np.save(tmp_path / "2.npy", np.array([3, 7]))  # the same images, not a prefix: answers would not be shared
    with pytest.raises(ArtifactError, match=r"2.npy is not a prefix of the largest subset"):
        nested_subsets(tmp_path, [2, 5])
