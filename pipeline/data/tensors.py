"""Image arrays to network inputs, in one place so that every model sees the same preprocessing
(running a network over them: :mod:`pipeline.models.inference`)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import ParamsError

# Fashion-MNIST training-set statistics (greyscale), ImageNet's (colour photos)
MEAN, STD = 0.2860, 0.3530
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_input(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W) greyscale -> normalised float (N, 1, H, W); uint8 (N, H, W, 3) colour ->
    ImageNet-normalised (N, 3, H, W); on ``device``."""
    x = torch.as_tensor(images).to(device)
    if x.ndim == 4 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return ((x.float() / 255.0) - MEAN) / STD


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("params.yaml: runtime.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def input_channels(images: np.ndarray) -> int:
    return 3 if images.ndim == 4 and images.shape[-1] == 3 else 1
