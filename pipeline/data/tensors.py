"""Image arrays to network inputs, in one place so that every model sees the same preprocessing."""
from __future__ import annotations

import numpy as np
import torch

# Fashion-MNIST training-set statistics
MEAN, STD = 0.2860, 0.3530


def to_input(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W) images -> normalised float (N, 1, H, W) on ``device``."""
    x = torch.as_tensor(images).to(device)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return ((x.float() / 255.0) - MEAN) / STD


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("params.yaml: runtime.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


@torch.no_grad()
def describe(model: torch.nn.Module, images: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """Descriptors of ``images`` in batches, as float32 numpy (N, dim). Channels-last is the faster
    layout for convolutions on the CPU (about 1.5x here) and the same numbers up to float rounding."""
    model.eval().to(memory_format=torch.channels_last)
    out = [model(to_input(images[i:i + batch_size], device).contiguous(memory_format=torch.channels_last)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.dim), dtype=np.float32)
