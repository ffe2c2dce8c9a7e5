"""A descriptor network as a service receives images: uint8 pixels in, normalised inside.

This is the form a student is logged to MLflow in (PyTorch flavour), exported to ONNX and
TorchScript, and served in: the caller sends ``(n, H, W)`` greyscale or ``(n, H, W, 3)`` colour
uint8 arrays, exactly what the pipeline's own ``to_input`` would prepare, and gets one
L2-normalised descriptor per image.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.data.tensors import IMAGENET_MEAN, IMAGENET_STD, MEAN, STD


class ImageDescriptor(nn.Module):
    def __init__(self, model: nn.Module, colour: bool):
        super().__init__()
        self.model, self.colour = model.eval(), colour
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if colour else ((MEAN,), (STD,))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32) / 255.0
        x = x.permute(0, 3, 1, 2) if self.colour else x.unsqueeze(1)
        return self.model((x - self.mean) / self.std)


def deployable(model: nn.Module) -> ImageDescriptor:
    return ImageDescriptor(model.cpu(), getattr(model, "in_channels", 1) == 3).eval()
