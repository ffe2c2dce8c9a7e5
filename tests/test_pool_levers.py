"""The two levers on the unqueried pool: label-free pretraining, and choosing which images to ask about."""

import numpy as np
import pytest
import torch

from pipeline.distill.selection import approximate_typicality, choose_subset, typical_order, typicality


def clusters(
    n_per: int, centres: int, dim: int = 8, seed: int = 0, spread: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Tight clusters of very different sizes (cluster k holds n_per * (k + 1) points) plus a few outliers."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim))
    rows, labels = [], []
    for k in range(centres):
        count = n_per * (k + 1)
        rows.append(means[k] + spread * rng.normal(size=(count, dim)))
        labels += [k] * count
    outliers = 3 * rng.normal(size=(5, dim))
    return np.concatenate(rows + [outliers]).astype(np.float32), np.array(labels + [-1] * 5)


def test_the_order_is_nested_without_repeats():
    x, _ = clusters(20, 6)
    long, short = typical_order(x, 60), typical_order(x, 12)
    assert np.array_equal(long[:12], short) and len(set(long.tolist())) == 60


def test_a_tiny_budget_covers_the_clusters_and_skips_outliers():
    """Random draws from clusters of unequal size miss the small ones; the typical order covers them
    all within the first ten picks (the smallest, least dense cluster last), and takes no outlier."""
    x, labels = clusters(25, 8)  # every cluster larger than the 20 neighbours typicality looks at
    picked = labels[typical_order(x, 12)]
    assert len(set(picked[:8])) >= 7 and set(picked[:10]) == set(range(8)) and -1 not in picked
    covered = [
        len(set(labels[np.random.default_rng(s).choice(len(x), 10, replace=False)]) - {-1}) == 8 for s in range(20)
    ]
    assert sum(covered) <= 5  # random draws of 10 nearly always miss a cluster


def test_typicality_ranks_dense_points_above_outliers():
    x, labels = clusters(10, 3)
    typ = typicality(torch.nn.functional.normalize(torch.as_tensor(x), dim=1), knn=5)
    assert typ[labels == -1].max() < typ[labels >= 0].median()


def test_typicality_is_the_same_however_the_columns_are_cut():
    """Chunks of columns (the last a small remainder) give the very floats of one pass over them all."""
    import torch
    from torch.nn import functional as F

    from pipeline.distill.selection import typicality

    features = F.normalize(torch.randn(1003, 24, generator=torch.Generator().manual_seed(0)), dim=1)
    whole = typicality(features, knn=10, block=300, columns=100_000)
    for columns in (250, 500, 1000):  # 1003 = 4 x 250 + 3, 2 x 500 + 3, 1000 + 3
        assert torch.equal(typicality(features, knn=10, block=300, columns=columns), whole), columns


def test_the_blocked_order_is_the_one_pass_order():
    """Few candidates and short blocks force the fallback (a full pass when a stale score might win)
    often, and a short lead makes full passes update only part of the pool and widen it when a stale
    score outside could still reach the candidates; the order is still the one-pass-per-pick one
    (these random points have no float ties)."""
    from torch.nn import functional as F

    from pipeline.distill import selection

    f = F.normalize(torch.randn(3000, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    typ = selection.typicality(f, knn=10)
    want = selection.one_pass_order(f, typ, 400)
    for block, candidates, lead in (
        (64, 4096, 16384),
        (16, 64, 16384),
        (5, 8, 16384),
        (16, 64, 128),
        (5, 8, 10),
        (1, 1, 1),
    ):
        passes = []
        got = selection.blocked_order(f, typ, 400, block=block, candidates=candidates, lead=lead, passes=passes)
        assert np.array_equal(got, want), (block, candidates, lead)
        blocks = 1 + 399 // block  # the first pick's pass, then one per full block
        assert len(passes) >= blocks, (block, candidates, lead)
        if candidates < 3000 and block > 1:  # (a block of one pick has a full pass after every pick)
            assert len(passes) > blocks, "the stale-score fallback was never taken"
        if lead < 3000:
            assert passes[0] == 3000  # the first pass: every image is as far as can be from nothing
            shortest = max(lead, candidates + 1)  # a pass stops only beyond the candidates
            assert min(passes) == shortest < max(passes[1:]), "a pass never updated less, or never widened"
    assert np.array_equal(selection.blocked_order(f.double(), typ.double(), 400), want)
    with pytest.raises(ValueError, match="candidates 0 must be at least 1"):
        selection.blocked_order(f, typ, 400, candidates=0)


def test_approximate_typicality_ranks_as_the_exact_one():
    x, labels = clusters(60, 6, dim=16)
    f = torch.nn.functional.normalize(torch.as_tensor(x), dim=1)
    exact, approx = typicality(f, knn=20), approximate_typicality(f, knn=20)
    assert np.corrcoef(exact.numpy(), approx.numpy())[0, 1] > 0.95
    assert approx[labels == -1].max() < approx[labels >= 0].median()
    assert torch.equal(approx, approximate_typicality(f, knn=20))  # seeded: the same floats again


def test_the_list_by_list_density_is_what_a_faiss_ivf_search_of_every_row_finds():
    """The oracle: faiss's own IVF search, the same trained lists and probes, one query at a time."""
    from pipeline.distill.selection import approximate_density, ivf_index

    x, _ = clusters(40, 8, dim=24, spread=0.3)  # 1,445 rows: 37 lists of about 39, some under knn + 1
    x = np.ascontiguousarray(torch.nn.functional.normalize(torch.as_tensor(x), dim=1).numpy())
    index = ivf_index(x, seed=0)
    index.add(x)
    for knn, nprobe in ((20, 8), (20, 1), (5, 3), (20, 37)):
        index.nprobe = nprobe
        sims, ids = index.search(x, knn + 1)
        found = ids[:, 1:] >= 0  # the first is the row itself
        want = np.where(found, sims[:, 1:], 0).sum(1) / np.maximum(found.sum(1), 1)
        assert (~found).any() == (nprobe == 1), "the case of too few found is covered where it can arise"
        got = approximate_density(torch.as_tensor(x), knn=knn, nprobe=nprobe)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    # every list probed: every pair compared (densities, not ranks: some rows' densities are 1e-7 apart)
    exact = np.sort(x @ x.T, axis=1)[:, ::-1][:, 1:21].mean(1)
    every = approximate_density(torch.as_tensor(x), knn=20, nprobe=37)
    np.testing.assert_allclose(every, exact, rtol=0, atol=2e-6)
    typ = approximate_typicality(torch.as_tensor(x), knn=20, nprobe=37)  # the densities' percentiles
    assert np.all(np.diff(every[typ.argsort().numpy()]) >= 0)
    assert torch.equal(typ.sort().values, torch.arange(1, len(x) + 1) / len(x))


def test_sample_neighbours_auto_is_exact_up_to_its_limit_and_approximate_beyond():
    from pipeline.distill.selection import EXACT_UP_TO, neighbours_for

    assert neighbours_for("auto", 55_000) == neighbours_for("auto", EXACT_UP_TO) == "exact"
    assert neighbours_for("auto", EXACT_UP_TO + 1) == "approximate"
    assert neighbours_for("exact", 10**6) == "exact" and neighbours_for("approximate", 100) == "approximate"


def test_choose_subset_switches_on_the_training_pool_size(monkeypatch):
    """auto is exact while the training pool (the pool less the validation split) is within the limit."""
    from pipeline.distill import selection

    pool = np.random.default_rng(0).integers(0, 256, (600, 28, 28), dtype=np.uint8)
    choose = lambda neighbours: selection.choose_subset(  # noqa: E731
        "typical", "pixels", pool, 600, 150, 28, 100, 3, None, neighbours=neighbours
    )
    exact, approximate = choose("exact"), choose("approximate")
    assert not np.array_equal(exact, approximate)
    monkeypatch.setattr(selection, "EXACT_UP_TO", 500)  # the training pool: 600 - 100
    assert np.array_equal(choose("auto"), exact)
    monkeypatch.setattr(selection, "EXACT_UP_TO", 499)
    assert np.array_equal(choose("auto"), approximate)
    with pytest.raises(ValueError, match="expected auto, exact or approximate"):
        choose("fast")


def test_an_approximate_selection_covers_the_clusters_like_the_exact_one():
    x, labels = clusters(25, 8)
    picked = labels[typical_order(x, 12, neighbours="approximate")]
    assert set(picked[:10]) == set(range(8)) and -1 not in picked
    order = typical_order(x, 300, neighbours="approximate")
    assert len(set(order.tolist())) == 300 and np.array_equal(
        order[:12], typical_order(x, 12, neighbours="approximate")
    )


def test_selection_never_takes_a_validation_image():
    from pipeline.distill.sampling import validation_split

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (600, 28, 28), dtype=np.uint8)
    held_out = np.concatenate(validation_split(600, 100, 10, 3))
    subset = choose_subset("typical", "pixels", pool, 600, 200, 28, 100, 3, None, neighbours="auto")
    assert len(set(subset.tolist())) == 200 and not np.isin(subset, held_out).any()
    rnd = choose_subset("random", "pixels", None, 600, 200, 28, 100, 3, None, neighbours="auto")
    assert not np.isin(rnd, held_out).any() and not np.array_equal(np.sort(rnd), np.sort(subset))
    approx = choose_subset("typical", "pixels", pool, 600, 200, 28, 100, 3, None, neighbours="approximate")
    assert len(set(approx.tolist())) == 200 and not np.isin(approx, held_out).any()


def test_views_are_seeded_and_differ():
    from pipeline.distill.pretrain import random_views

    x = torch.randn(4, 1, 28, 28)
    a = random_views(x, 0.35, torch.Generator().manual_seed(1))
    b = random_views(x, 0.35, torch.Generator().manual_seed(1))
    c = random_views(x, 0.35, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, c)


def test_the_contrastive_loss_rewards_matching_views():
    from pipeline.distill.pretrain import nt_xent

    z = torch.nn.functional.normalize(torch.randn(16, 32), dim=1)
    other = torch.nn.functional.normalize(torch.randn(16, 32), dim=1)
    assert nt_xent(z, z, 0.2) < nt_xent(z, other, 0.2)


class MemoryCheckpointer:
    def __init__(self, every: int, stop_after: int | None = None):
        self.every, self.stop_after, self.state = every, stop_after, None

    def load(self, refuse=None):
        return None if self.state is None or (refuse and refuse(self.state)) else self.state

    def save(self, state):
        self.state = {k: (v.copy() if isinstance(v, dict) else v) for k, v in state.items()}
        if self.stop_after is not None and state["step"] >= self.stop_after:
            raise KeyboardInterrupt  # killed right after a checkpoint


@pytest.mark.trains
def test_pretraining_resumes_bit_identical(monkeypatch):
    from pipeline.distill.pretrain import pretrain_student
    from tests.pipeline_copy import repo_params

    p = repo_params({"pretrain": {"steps": 6, "batch_size": 8}})
    sp = p.students["small"].model_copy(update={"arch": "student_tiny", "dim": 16})
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    whole, curve = pretrain_student(images, sp, p.pretrain, 0, torch.device("cpu"))
    ckpt = MemoryCheckpointer(every=2, stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        pretrain_student(images, sp, p.pretrain, 0, torch.device("cpu"), checkpointer=ckpt)
    ckpt.stop_after = None
    resumed, curve2 = pretrain_student(images, sp, p.pretrain, 0, torch.device("cpu"), checkpointer=ckpt)
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert curve == curve2


def test_answers_by_pool_index(tmp_path):
    from pipeline.distill.ceiling import answers_for, enabled
    from pipeline.errors import ArtifactError

    path = tmp_path / "pool.npz"
    np.savez(path, indices=np.array([7, 3, 9]), descriptors=np.eye(3, dtype=np.float16), skipped=np.array(""))
    assert np.array_equal(answers_for(path, np.array([9, 7])), np.eye(3, dtype=np.float32)[[2, 0]])
    with pytest.raises(ArtifactError, match="no teacher answer for 1 of the 2"):
        answers_for(path, np.array([9, 4]))
    assert enabled("auto", queried_teacher=False) and not enabled("auto", queried_teacher=True)
    assert enabled("true", queried_teacher=True) and not enabled("false", queried_teacher=False)


@pytest.mark.trains
@pytest.mark.e2e
def test_a_rerun_pretraining_gives_its_file_back_byte_identical(finished_repo, tmp_path):
    """Every student depends on the pretrained file: a rerun of its stage (a code edit that changes
    nothing it computes) must give it back byte for byte, or DVC retrains every student."""
    from tests.pipeline_copy import clone, run_stage

    repo = clone(finished_repo, tmp_path / "copy")
    out = repo / "models/pretrained/small.pt"
    before = out.read_bytes()
    result = run_stage(repo, "pretrain@small")
    assert "after 6 steps" in result.output  # really retrained (6 = TINY's pretrain.steps), not skipped
    assert out.read_bytes() == before
