"""The teacher's card (``card.json``): what the teacher is and how to reach it.

- A teacher built here (``teacher.kind`` train, cirtorch, torchvision, efficientnet-lite): trained on
  the labelled pool or built from published weights (:func:`build`); its card names the weights file
  with its hash, its size and its cost per image (:func:`built_card`).
- A teacher you can only query (mlflow, kserve-v2, command, precomputed): its card says where it is,
  checked to answer without sending an image (:func:`queried_card`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from torch import nn

from pipeline.params import QueriesParams, TeacherParams


@dataclass
class BuiltTeacher:
    model: nn.Module  # on the CPU, in eval mode
    arch: str
    input_shape: tuple[int, ...]  # one input, for counting FLOPs
    summary: dict  # the stage's metrics (``history``: per-epoch training loss and accuracy)
    logged: dict  # MLflow params beside the card
    extra: dict = field(default_factory=dict)  # saved with the weights (a published teacher's preprocessing)


def input_shape(tp: TeacherParams, pool_images: np.ndarray | None) -> tuple[int, ...]:
    """What one teacher input looks like, for counting its FLOPs: the pool's arrays, or a 4:3 photo at
    the published teacher's resolution."""
    if tp.kind == "train":
        return (3, *pool_images.shape[1:3]) if pool_images.ndim == 4 else (1, *pool_images.shape[1:3])
    return (3, tp.image_size * 3 // 4, tp.image_size)


def training_set(tp: TeacherParams, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``teacher.kind: train`` learns from: the labelled pool, or its first ``teacher.train_images``."""
    return (images[: tp.train_images], labels[: tp.train_images]) if tp.train_images else (images, labels)


def training_steps(tp: TeacherParams, n_images: int) -> int:
    return tp.epochs * math.ceil(n_images / tp.batch_size)


def build(
    tp: TeacherParams,
    device,
    downloads: Path,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    on_step: Callable[[int, int], None] | None = None,
    precision: str = "fp32",
) -> BuiltTeacher:
    """The teacher of ``teacher.kind``: trained on ``images`` and ``labels`` (kind train; see
    :func:`training_set`), else built from its published weights (downloaded to ``downloads``)."""
    if tp.kind == "train":
        from pipeline.teacher.train import train_teacher

        model, history = train_teacher(images, labels, tp, tp.seed, device, on_step=on_step, precision=precision)
        return BuiltTeacher(
            model.cpu().eval(),
            tp.arch,
            input_shape(tp, images),
            summary={"history": [h.__dict__ for h in history]},
            logged={"train_images": len(images), "device": str(device), "precision": precision},
        )
    from pipeline.teacher import pretrained

    model, pre, source = pretrained.build(tp, downloads)
    return BuiltTeacher(
        model.cpu().eval(),
        source["architecture"],
        input_shape(tp, None),
        summary={"pretrained": source},
        logged={"source": source, "preprocess": pre.as_dict()},
        extra={"preprocess": pre.as_dict()},
    )


def built_card(tp: TeacherParams, built: BuiltTeacher, weights: Path) -> dict:
    """The card of a teacher whose weights were saved to ``weights`` (a file beside the card)."""
    from pipeline.efficiency import flops_per_image, parameter_count
    from pipeline.io import file_sha256

    return {
        "kind": tp.kind,
        "arch": built.arch,
        "dim": built.model.dim,
        "weights": weights.name,
        "weights_sha256": file_sha256(weights),
        "parameters": parameter_count(built.model),
        "flops_per_image": flops_per_image(built.model, built.input_shape),
        "input_shape": list(built.input_shape),
    }


def queried_card(tp: TeacherParams, queries: QueriesParams, device) -> dict:
    """Where the teacher is, checked to answer (a ping, its metadata, its file), without sending an image."""
    from pipeline.teacher.blackbox import client_for

    card = {
        "kind": tp.kind,
        "dim": tp.dim,
        "url": tp.url,
        "model": tp.model,
        "command": tp.command,
        "descriptors": tp.descriptors,
        "auth_env": tp.auth_env,
        "auth_header": tp.auth_header,
    }
    if tp.kind == "precomputed":
        from pipeline.teacher.precomputed import PrecomputedDescriptors

        source = PrecomputedDescriptors(Path(tp.descriptors), tp.dim)
        card.update(endpoint=f"{tp.descriptors} (precomputed)", descriptors_sha256=source.sha256)
    else:
        client = client_for(card, Path("."), queries, device)
        card["endpoint"] = client.endpoint
        if tp.kind == "command":  # an edited script is another teacher: the card (and so the dump) changes
            card["files"] = client.named_files()
    return card
