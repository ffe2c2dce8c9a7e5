"""Loss terms compare similarity structure, whatever the descriptor sizes."""

import pytest
import torch
from torch.nn import functional as F

from pipeline.distill.losses import listwise_ranking_loss


def unit(n, d, seed=0):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def orthonormal(d_in, d_out, seed=0):
    q, _ = torch.linalg.qr(torch.randn(d_out, d_out, generator=torch.Generator().manual_seed(seed)))
    return q[:d_in]  # (d_in, d_out) with orthonormal rows: preserves inner products


def test_identical_structure_gives_zero_loss():
    t = unit(16, 32)
    assert listwise_ranking_loss(t, t.clone(), 0.1, 0.1).item() < 1e-6


def test_loss_is_independent_of_descriptor_size():
    t = unit(16, 32)
    for d_s in (32, 64, 128, 256):
        s = t @ orthonormal(32, d_s, seed=d_s)  # same Gram matrix in a bigger space
        assert s.shape == (16, d_s)
        assert listwise_ranking_loss(t, s, 0.1, 0.1).item() < 1e-5
    low = unit(16, 8, seed=1)  # teacher living in 8 dims, student in 256
    assert listwise_ranking_loss(low, low @ orthonormal(8, 256), 0.1, 0.1).item() < 1e-5


def test_loss_is_invariant_to_rotation_of_either_space():
    t, s = unit(16, 32, 1), unit(16, 64, 2)
    base = listwise_ranking_loss(t, s, 0.1, 0.1)
    rot_t = listwise_ranking_loss(t @ orthonormal(32, 32, 3), s, 0.1, 0.1)
    rot_s = listwise_ranking_loss(t, s @ orthonormal(64, 64, 4), 0.1, 0.1)
    assert torch.allclose(base, rot_t, atol=1e-5) and torch.allclose(base, rot_s, atol=1e-5)


def test_different_structure_is_penalised_and_gives_gradients():
    t = unit(16, 32, 1)
    s = unit(16, 32, 2).requires_grad_()
    loss = listwise_ranking_loss(t, s, 0.1, 0.1)
    assert loss.item() > 0.1
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_hand_checked_value_for_three_points():
    # Gram rows without the anchor: a0 sees [0, -1], a1 sees [0, 0], a2 sees [-1, 0]
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    collapsed = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # student: every row uniform
    p0 = torch.softmax(torch.tensor([0.0, -1.0]), 0)
    kl0 = (p0 * (p0.log() - torch.tensor([0.5, 0.5]).log())).sum()
    expected = (kl0 + 0.0 + kl0) / 3
    assert torch.allclose(listwise_ranking_loss(t, collapsed, 1.0, 1.0), expected, atol=1e-6)
    assert listwise_ranking_loss(t, t.clone(), 1.0, 1.0).item() < 1e-7


# ---- the other terms a method may sum --------------------------------------------------------
from pipeline.distill.losses import (  # noqa: E402
    JointBatch,
    Objective,
    cosine_regression_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    supcon_loss,
)


def test_rkd_terms_vanish_on_identical_structure_and_ignore_rotation_and_size():
    t = unit(12, 32, 1)
    for d_s in (32, 64, 128, 256):
        s = t @ orthonormal(32, d_s, seed=d_s)  # same geometry in a bigger space
        assert rkd_distance_loss(t, s).item() < 1e-6
        assert rkd_angle_loss(t, s).item() < 1e-6
    s = unit(12, 64, 2)
    rotated = s @ orthonormal(64, 64, 5)
    assert torch.allclose(rkd_distance_loss(t, s), rkd_distance_loss(t, rotated), atol=1e-5)
    assert torch.allclose(rkd_angle_loss(t, s), rkd_angle_loss(t, rotated), atol=1e-5)
    assert rkd_distance_loss(t, s).item() > 1e-3 and rkd_angle_loss(t, s).item() > 1e-3


def test_rkd_distance_is_scale_free_and_hand_checked():
    # three points on a line at 0, 1, 3: pairwise distances 1, 3, 2 (mean 2); scaling changes nothing
    t = torch.tensor([[0.0], [1.0], [3.0]])
    assert rkd_distance_loss(t, 10 * t).item() < 1e-7
    # student: equilateral (all distances equal -> normalised 1); teacher normalised 0.5, 1.5, 1
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 3**0.5 / 2]])
    diffs = torch.tensor([0.5, 0.5, 0.0])  # |1 - 0.5|, |1 - 1.5|, |1 - 1|, each pair twice
    expected = (0.5 * diffs**2).mean()  # smooth L1 below 1 is 0.5 x^2
    assert torch.allclose(rkd_distance_loss(t, s), expected, atol=1e-6)


def test_cosine_regression_hand_checked():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert cosine_regression_loss(t, 3 * t).item() < 1e-7  # scale does not matter
    assert torch.isclose(cosine_regression_loss(t, torch.tensor([[0.0, 1.0], [0.0, 1.0]])), torch.tensor(0.5))


def test_supcon_prefers_class_structure():
    labels = torch.tensor([0, 0, 1, 1])
    good = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    bad = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert supcon_loss(good, labels, 0.1) < supcon_loss(bad, labels, 0.1)
    # hand-checked: anchor 0 sees [1 (same class), 0, 0] / 0.1 -> -log(e^10 / (e^10 + 2))
    expected = -torch.log(torch.exp(torch.tensor(10.0)) / (torch.exp(torch.tensor(10.0)) + 2))
    assert torch.isclose(supcon_loss(good, labels, 0.1), expected, atol=1e-5)


def _repo_methods():
    from pathlib import Path

    from pipeline.params import load_params

    methods = load_params(Path(__file__).resolve().parents[1] / "params.yaml").method
    assert {"derd", "derd-input", "derd-noaug", "rkd", "rkd-virtual", "regression", "supervised"} <= set(methods)
    return methods


@pytest.mark.trains
@pytest.mark.parametrize("d_s", [32, 64, 128, 256])  # 128 is the teacher's size
def test_every_method_trains_at_any_descriptor_size(d_s):
    """Each method's objective runs and back-propagates for student sizes 32..256 and the teacher's (128)."""
    torch.manual_seed(0)
    d_t, n_real, n_virtual = 128, 10, 6
    for name, method in _repo_methods().items():
        objective = Objective(method, d_s, d_t, n_classes=3)
        s = unit(n_real + n_virtual, d_s, 1).requires_grad_()
        batch = JointBatch(s, unit(n_real + n_virtual, d_t, 2), n_real, torch.arange(n_real) % 3)
        loss, parts = objective(batch)
        loss.backward()
        assert torch.isfinite(loss) and s.grad.abs().sum() > 0, name
        assert set(parts) == {n for n, _ in method.losses.items()}
        has_projection = any(p.shape == (d_t, d_s) for p in objective.parameters())
        assert has_projection == ("regression" in parts), name  # only regression needs a projection


def test_identical_structure_gives_zero_for_every_teacher_term():
    t = unit(12, 128, 3)
    for name, method in _repo_methods().items():
        if method.uses_labels or "regression" in method.losses:
            continue
        loss, _ = Objective(method, 128, 128)(JointBatch(t.clone(), t, 8))
        assert loss.item() < 1e-5, name


def test_each_registered_term_is_in_the_params_schema_and_computes_from_its_knobs():
    """One registration per term (pipeline/distill/terms.py): the params schema, LABEL_LOSSES and the
    objective's modules are derived from it and agree with it."""
    from pipeline.distill.losses import MODULES, JointBatch
    from pipeline.distill.terms import TERMS
    from pipeline.params import LABEL_LOSSES, LossTerms

    assert list(LossTerms.model_fields) == list(TERMS) == list(MODULES)  # the order terms are summed in
    assert LABEL_LOSSES == tuple(name for name, term in TERMS.items() if term.reads_labels)
    assert set(LABEL_LOSSES) == {"normsoftmax", "supcon"}
    teacher, student = unit(8, 16, 1), unit(8, 12, 2).requires_grad_()
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1])
    for name, term in TERMS.items():
        assert term.knobs in LossTerms.model_fields[name].annotation.__args__, name
        assert issubclass(MODULES[name], torch.nn.Module) and MODULES[name].__name__ == term.module
        knobs = term.knobs(**{f: 0.5 for f in term.knobs.model_fields})
        module = MODULES[name](knobs, student_dim=12, teacher_dim=16, n_classes=3)
        # a label term never sees the teacher; a distillation term never sees labels
        if term.reads_labels:
            batch = JointBatch(student, None, 6, labels[:6])
        else:
            batch = JointBatch(student, teacher, 6, None)
        value = module(batch)
        assert value.ndim == 0 and torch.isfinite(value), name
        assert LossTerms.model_validate({name: knobs.model_dump()}).items() == [(name, knobs)]
