"""Generalised-mean pooling (Radenovic et al., TPAMI 2018), the standard retrieval pooling."""

from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the mean over the whole map, as cnnimageretrieval's avg_pool2d over (H, W); written as a mean
        # so that it exports to ONNX with any input size
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.2f}, eps={self.eps}"
