"""The listwise ranking loss compares similarity structure, whatever the descriptor sizes."""
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
