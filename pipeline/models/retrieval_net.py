"""Retrieval networks on standard backbones: a convolutional trunk, GeM pooling, L2 normalisation
and an optional linear "whitening" layer, laid out as cnnimageretrieval-pytorch lays them out
(``features.*``, ``pool.p``, ``whiten.*``) so its published checkpoints load by name.

Named ``gem_<backbone>`` for every torchvision classification model (ResNets, MobileNets,
EfficientNets, VGG, ...) and for EfficientNet-Lite; resolved on demand by the registry, so that only
stages that build one pay for importing torchvision. As a student, a descriptor size other than the
trunk's width adds the linear layer (a projection); as a teacher, ``whitening`` adds it at full width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import pipeline.models.efficientnet_lite as efficientnet_lite
from pipeline.errors import ParamsError
from pipeline.models.pooling import GeM


def torchvision_trunk(name: str) -> nn.Module:
    """The convolutional part of a torchvision model, without its pooling and classifier."""
    import torchvision

    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError as exc:
        raise KeyError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()") from exc
    return trunk_of(net, name)


def trunk_of(net: nn.Module, name: str) -> nn.Module:
    """The trunk exactly as cnnimageretrieval-pytorch cuts it (``init_network``): AlexNet and VGG
    without their last max-pool, DenseNet with a final ReLU, ResNet without avgpool and fc; other
    families (MobileNet, EfficientNet, ConvNeXt, ...) their ``features``."""
    if name.startswith(("alexnet", "vgg")):
        return nn.Sequential(*list(net.features.children())[:-1])
    if name.startswith("densenet"):
        return nn.Sequential(*list(net.features.children()), nn.ReLU(inplace=True))
    if hasattr(net, "features"):
        return net.features
    return nn.Sequential(*list(net.children())[:-2])


def trunk_channels(trunk: nn.Module, in_channels: int) -> int:
    with torch.no_grad():
        return int(trunk.eval()(torch.zeros(1, in_channels, 64, 64)).shape[1])


class RetrievalNet(nn.Module):
    def __init__(self, trunk: nn.Module, channels: int, dim: int, whitening: bool):
        super().__init__()
        self.features = trunk
        self.pool = GeM()
        self.whiten = nn.Linear(channels, dim) if whitening or dim != channels else None
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.normalize(self.pool(self.features(x)), dim=-1)
        return F.normalize(self.whiten(out), dim=-1) if self.whiten is not None else out


def build(trunk_name: str, dim: int, in_channels: int = 3, whitening: bool = False) -> RetrievalNet:
    if trunk_name in efficientnet_lite.VARIANTS:
        trunk = efficientnet_lite.EfficientNetLiteFeatures(trunk_name, in_channels)
        channels = trunk.out_channels
    else:
        if in_channels != 3:
            raise ParamsError(f"gem_{trunk_name} takes colour images; this dataset's images are greyscale")
        trunk = torchvision_trunk(trunk_name)
        channels = trunk_channels(trunk, in_channels)
    return RetrievalNet(trunk, channels, dim or channels, whitening)


def is_backbone(name: str) -> bool:
    """``name`` is ``gem_`` + EfficientNet-Lite or a torchvision classification model."""
    if not name.startswith("gem_"):
        return False
    trunk = name.removeprefix("gem_")
    if trunk in efficientnet_lite.VARIANTS:
        return True
    import torchvision

    return trunk in torchvision.models.list_models(module=torchvision.models)


def factory(name: str):
    trunk = name.removeprefix("gem_")
    return lambda dim, in_channels=3, whitening=False: build(trunk, dim, in_channels, whitening)
