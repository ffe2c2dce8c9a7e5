"""The teacher as a black box: images in, descriptors out, nothing else visible."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.checkpoint import load_model
from pipeline.data.tensors import describe


def load_black_box(checkpoint: Path, device: torch.device, batch_size: int = 1024) -> Callable[[np.ndarray], np.ndarray]:
    """A function from uint8 images to L2-normalised descriptors; the weights stay in its closure."""
    model = load_model(checkpoint, device)

    def teacher(images: np.ndarray) -> np.ndarray:
        return describe(model, images, batch_size, device)

    return teacher
