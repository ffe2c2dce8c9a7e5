"""The teacher as a black box behind its gate: images in, descriptors out, every call counted.

``open_teacher`` is the only public way to the teacher's checkpoint, and it returns the gate, not
the model: no code path can call the teacher without the budget check and the ledger.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.checkpoint import load_model
from pipeline.data.tensors import describe
from pipeline.io import file_sha256
from pipeline.teacher.queries import QueryGate, QueryStore


def _black_box(checkpoint: Path, device: torch.device, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    model = load_model(checkpoint, device)
    if model.preprocess is not None:  # a published teacher: its own resolution, scales, normalisation
        from pipeline.teacher.pretrained import describe_images

        return lambda images: describe_images(model, images, model.preprocess, device)

    def teacher(images: np.ndarray) -> np.ndarray:
        return describe(model, images, batch_size, device)

    return teacher


def open_teacher(checkpoint: Path, store_dir: Path, purpose: str, budget: int, device: torch.device,
                 batch_size: int = 256) -> QueryGate:
    """The teacher of ``checkpoint``, reachable only through a gate of ``budget`` images whose
    answers and ledger live in ``store_dir`` (one store per teacher checkpoint)."""
    store = QueryStore(store_dir, file_sha256(checkpoint), purpose)
    return QueryGate(_black_box(checkpoint, device, batch_size), store, budget, batch_size)
