"""Students: narrow, cheap descriptor networks (the teacher's building blocks, fewer channels)."""

from __future__ import annotations

from torch import nn

from pipeline.models.cnn import DescriptorCNN
from pipeline.models.registry import register


@register("student_cnn")
def student_cnn(dim: int, in_channels: int = 1) -> nn.Module:
    return DescriptorCNN((16, 32, 64), dim, in_channels, blocks=(1, 1, 1))


@register("student_fast")
def student_fast(dim: int, in_channels: int = 1) -> nn.Module:
    """Stride-2 first convolution: no full-resolution feature maps, which dominate CPU time. Twice the
    width of ``student_cnn`` and still faster: 25 vs 46 ms per 128-image training step, 2.7x the
    images per second (measured on the 2-core reference machine)."""
    return DescriptorCNN((32, 64, 128), dim, in_channels, blocks=(1, 1, 1), stem_stride=2)


@register("student_tiny")
def student_tiny(dim: int, in_channels: int = 1) -> nn.Module:
    return DescriptorCNN((8, 16, 32), dim, in_channels, blocks=(1, 1, 1))


@register("student_deep")
def student_deep(dim: int, in_channels: int = 1) -> nn.Module:
    """The teacher's layout behind a stride-2 first convolution: about 4.6x fewer FLOPs than the teacher."""
    return DescriptorCNN((32, 64, 128), dim, in_channels, blocks=(1, 2, 2), stem_stride=2)


@register("student_wide")
def student_wide(dim: int, in_channels: int = 1) -> nn.Module:
    """``student_deep`` 1.5x wider: about 2x fewer FLOPs than the teacher."""
    return DescriptorCNN((48, 96, 192), dim, in_channels, blocks=(1, 2, 2), stem_stride=2)
