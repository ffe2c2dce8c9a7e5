"""Loss terms a method sums (pytorch-metric-learning style: each term one module, composed by weight).

Distillation terms compare the teacher's and the student's *similarity structure* over the joint
set of real and virtual samples, so the two descriptor sizes may differ; only ``regression`` needs
a learned projection. Label terms are the supervised baseline's and see the real samples only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.distill.terms import TERMS
from pipeline.params import MethodParams


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return m.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def listwise_ranking_loss(
    teacher: torch.Tensor, student: torch.Tensor, tau_teacher: float, tau_student: float
) -> torch.Tensor:
    """Mean over anchors a of KL(softmax(G_T[a, -a] / tau_T) || softmax(G_S[a, -a] / tau_S)).

    ``G = X X^T`` over the joint set; each row leaves out the anchor itself. Both inputs are
    L2-normalised descriptors (n, d_T) and (n, d_S).
    """
    _check_pair(teacher, student, minimum=3)
    log_p_teacher = F.log_softmax(_off_diagonal(teacher @ teacher.T) / tau_teacher, dim=1)
    log_p_student = F.log_softmax(_off_diagonal(student @ student.T) / tau_student, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")


def rkd_distance_loss(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """RKD-D (Park et al., CVPR 2019): Huber loss between pairwise distances, each set divided by its mean."""
    _check_pair(teacher, student, minimum=2)

    def normalised(x):
        d = torch.cdist(x, x)
        off = _off_diagonal(d)
        return off / off.mean().clamp_min(1e-12)

    with torch.no_grad():
        t = normalised(teacher)
    return F.smooth_l1_loss(normalised(student), t)


def rkd_angle_loss(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """RKD-A: Huber loss between the cosines of the angles each triplet of samples forms."""
    _check_pair(teacher, student, minimum=3)

    def angles(x):
        e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), dim=2)  # e[j, i] = unit(x_i - x_j)
        return torch.bmm(e, e.transpose(1, 2)).flatten()

    with torch.no_grad():
        t = angles(teacher)
    return F.smooth_l1_loss(angles(student), t)


def cosine_regression_loss(teacher: torch.Tensor, projected_student: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(P s, t): the student's descriptor, projected to the teacher's space, points at it."""
    return (1 - F.cosine_similarity(projected_student, teacher, dim=1)).mean()


def supcon_loss(student: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020) over L2-normalised descriptors."""
    logits = _off_diagonal(student @ student.T) / temperature
    same = _off_diagonal((labels[:, None] == labels[None, :]).float())
    log_prob = F.log_softmax(logits, dim=1)
    has_positive = same.sum(1) > 0
    if not has_positive.any():
        return student.sum() * 0
    per_anchor = -(log_prob * same).sum(1)[has_positive] / same.sum(1)[has_positive]
    return per_anchor.mean()


def _check_pair(teacher: torch.Tensor, student: torch.Tensor, minimum: int) -> None:
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(f"teacher has {teacher.shape[0]} samples, student {student.shape[0]}")
    if teacher.shape[0] < minimum:
        raise ValueError(f"this loss needs at least {minimum} samples in the joint set")


@dataclass
class JointBatch:
    """What every term may look at: descriptors of the joint set (real first) and the real samples' labels."""

    student: torch.Tensor  # (n_real + n_virtual, d_S)
    teacher: torch.Tensor | None  # (n_real + n_virtual, d_T); None for label-only methods
    n_real: int
    labels: torch.Tensor | None = None  # (n_real,); only for label terms


class Listwise(nn.Module):
    def __init__(self, k, **_):
        super().__init__()
        self.k = k

    def forward(self, b: JointBatch) -> torch.Tensor:
        return listwise_ranking_loss(b.teacher, b.student, self.k.tau_teacher, self.k.tau_student)


class RkdDistance(nn.Module):
    def __init__(self, k, **_):
        super().__init__()

    def forward(self, b: JointBatch) -> torch.Tensor:
        return rkd_distance_loss(b.teacher, b.student)


class RkdAngle(nn.Module):
    def __init__(self, k, **_):
        super().__init__()

    def forward(self, b: JointBatch) -> torch.Tensor:
        return rkd_angle_loss(b.teacher, b.student)


class Regression(nn.Module):
    """The one term that needs to know both sizes: a learned linear map d_S -> d_T."""

    def __init__(self, k, student_dim: int, teacher_dim: int, **_):
        super().__init__()
        self.projection = nn.Linear(student_dim, teacher_dim)

    def forward(self, b: JointBatch) -> torch.Tensor:
        return cosine_regression_loss(b.teacher, self.projection(b.student))


class NormSoftmax(nn.Module):
    """Normalised-softmax classification with an additive cosine margin (CosFace) on the real samples."""

    def __init__(self, k, student_dim: int, n_classes: int, **_):
        super().__init__()
        self.k = k
        self.weight = nn.Parameter(torch.randn(n_classes, student_dim) * 0.01)

    def forward(self, b: JointBatch) -> torch.Tensor:
        cos = b.student[: b.n_real] @ F.normalize(self.weight, dim=-1).T
        margin = self.k.margin * F.one_hot(b.labels, cos.shape[1]).to(cos.dtype)
        return F.cross_entropy(self.k.scale * (cos - margin), b.labels)


class SupCon(nn.Module):
    def __init__(self, k, **_):
        super().__init__()
        self.k = k

    def forward(self, b: JointBatch) -> torch.Tensor:
        return supcon_loss(b.student[: b.n_real], b.labels, self.k.temperature)


# each registered term's module, by the name pipeline/distill/terms.py registers it under
MODULES: dict[str, type[nn.Module]] = {name: globals()[term.module] for name, term in TERMS.items()}


class Objective(nn.Module):
    """Weighted sum of a method's terms; its own parameters (projection, class centres) train with the student."""

    def __init__(self, method: MethodParams, student_dim: int, teacher_dim: int, n_classes: int = 0):
        super().__init__()
        if method.uses_labels and n_classes < 1:
            raise ValueError("a label loss needs the number of classes")
        self.names = [name for name, _ in method.losses.items()]
        self.weights = [knobs.weight for _, knobs in method.losses.items()]
        self.terms = nn.ModuleList(
            MODULES[name](knobs, student_dim=student_dim, teacher_dim=teacher_dim, n_classes=n_classes)
            for name, knobs in method.losses.items()
        )

    def forward(self, batch: JointBatch) -> tuple[torch.Tensor, dict[str, float]]:
        values = [term(batch) for term in self.terms]
        total = sum(w * v for w, v in zip(self.weights, values))
        return total, {name: float(v.detach()) for name, v in zip(self.names, values)}
