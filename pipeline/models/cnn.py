"""VGG-style CNN descriptor networks sized for small greyscale images (Fashion-MNIST's 28x28), and
the default teacher. All end in GeM pooling, a linear projection to the descriptor size, and L2
normalisation. The students live in ``students.py``, so adding one never retrains the teacher.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.models.pooling import GeM
from pipeline.models.registry import register


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DescriptorCNN(nn.Module):
    """Stages of 3x3 conv blocks (``blocks`` per stage, default two), 2x2 max-pool between stages, GeM,
    projection, L2 norm."""

    def __init__(
        self,
        widths: tuple[int, ...],
        dim: int,
        in_channels: int = 1,
        blocks: tuple[int, ...] = (),
        stem_stride: int = 1,
    ):
        super().__init__()
        blocks = blocks or (2,) * len(widths)
        layers: list[nn.Module] = []
        cin = in_channels
        for k, (w, n) in enumerate(zip(widths, blocks)):
            if k:
                layers.append(nn.MaxPool2d(2))
            for b in range(n):
                layers.append(_block(cin, w, stem_stride if k == b == 0 else 1))
                cin = w
        self.features = nn.Sequential(*layers)
        self.pool = GeM()
        self.proj = nn.Linear(cin, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.pool(self.features(x))), dim=-1)


@register("teacher_cnn")
def teacher_cnn(dim: int, in_channels: int = 1) -> nn.Module:
    return DescriptorCNN((32, 64, 128), dim, in_channels, blocks=(1, 2, 2))
