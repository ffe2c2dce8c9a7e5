"""The loss terms a method can sum (``method.<name>.losses`` in params.yaml), each registered once: its
knobs (the keys params.yaml gives it, a pydantic model), whether it reads labels, and the module
of :mod:`pipeline.distill.losses` that computes it.

Everything else is derived from :data:`TERMS`: the ``losses`` schema and ``LABEL_LOSSES`` of
:mod:`pipeline.params`, and the modules an objective sums (:data:`pipeline.distill.losses.MODULES`).
A new term is its ``nn.Module`` in losses.py and one :func:`register` call here. This module
imports no torch, so that validating params.yaml does not either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class Knobs(BaseModel):
    """A term's settings under its name in ``losses``; every term has a weight in the method's sum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: PositiveFloat


@dataclass(frozen=True)
class Term:
    knobs: type[Knobs]
    module: str  # the nn.Module of pipeline.distill.losses that computes it
    reads_labels: bool  # a label term (the supervised baseline): sees the real samples' labels, no teacher


TERMS: dict[str, Term] = {}  # in registration order: the order a method's terms are summed in


def register(name: str, knobs: type[Knobs], module: str, reads_labels: bool = False) -> None:
    if name in TERMS:
        raise ValueError(f"loss term {name!r} is registered twice")
    TERMS[name] = Term(knobs, module, reads_labels)


class ListwiseKnobs(Knobs):
    tau_teacher: PositiveFloat
    tau_student: PositiveFloat


class NormSoftmaxKnobs(Knobs):
    scale: PositiveFloat
    margin: NonNegativeFloat


class SupConKnobs(Knobs):
    temperature: PositiveFloat


register("listwise", ListwiseKnobs, "Listwise")  # the paper's listwise ranking loss
register("rkd_distance", Knobs, "RkdDistance")  # relational KD (Park et al. 2019): distances
register("rkd_angle", Knobs, "RkdAngle")  # and angles
register("regression", Knobs, "Regression")  # a learned projection to the teacher's space, cosine loss
register("normsoftmax", NormSoftmaxKnobs, "NormSoftmax", reads_labels=True)  # CosFace on the labels
register("supcon", SupConKnobs, "SupCon", reads_labels=True)  # supervised contrastive
