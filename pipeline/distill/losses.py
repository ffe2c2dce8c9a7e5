"""Distillation losses that compare similarity structure, so teacher and student sizes may differ."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return m.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def listwise_ranking_loss(teacher: torch.Tensor, student: torch.Tensor, tau_teacher: float,
                          tau_student: float) -> torch.Tensor:
    """Mean over anchors a of KL(softmax(G_T[a, -a] / tau_T) || softmax(G_S[a, -a] / tau_S)).

    ``G = X X^T`` over the joint set; each row leaves out the anchor itself. Both inputs are
    L2-normalised descriptors (n, d_T) and (n, d_S).
    """
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(f"teacher has {teacher.shape[0]} samples, student {student.shape[0]}")
    if teacher.shape[0] < 3:
        raise ValueError("the listwise loss needs at least 3 samples in the joint set")
    log_p_teacher = F.log_softmax(_off_diagonal(teacher @ teacher.T) / tau_teacher, dim=1)
    log_p_student = F.log_softmax(_off_diagonal(student @ student.T) / tau_student, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
