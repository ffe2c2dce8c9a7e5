"""A timm-style registry: architectures are registered by name and built with ``create(name, dim)``.

Every network returns L2-normalised descriptors of the requested size, so teacher and student are
interchangeable in the retrieval code and the descriptor size is a free parameter.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn: Callable[..., nn.Module]):
        _REGISTRY[name] = fn
        return fn

    return deco


def available() -> list[str]:
    """The registered names, and the ``gem_<backbone>`` family (resolved on demand: importing
    torchvision costs seconds, which every stage would pay)."""
    return sorted(_REGISTRY) + ["gem_<any torchvision classification model>", "gem_efficientnet_lite0..4"]


def is_known(name: str) -> bool:
    if name in _REGISTRY:
        return True
    import pipeline.models.retrieval_net as retrieval_net

    return retrieval_net.is_backbone(name)


def create(name: str, dim: int, in_channels: int = 1, **options) -> nn.Module:
    """``options`` are architecture-specific (e.g. ``whitening`` of a retrieval network); the
    checkpoint stores them with ``in_channels`` so that ``load_model`` rebuilds the same network."""
    if name in _REGISTRY:
        factory = _REGISTRY[name]
    elif is_known(name):
        import pipeline.models.retrieval_net as retrieval_net

        factory = retrieval_net.factory(name)
    else:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(available())}")
    model = factory(dim=dim, in_channels=in_channels, **options)
    model.in_channels, model.options = in_channels, dict(options)
    return model


def check_names(params) -> None:
    """Every architecture that params.yaml names must be known; checked before any model is built."""
    from pipeline.errors import ParamsError

    archs = [(f"students.{name}.arch", sp.arch) for name, sp in params.students.items()]
    if not params.teacher.queried:
        archs.append(("teacher.arch", params.teacher.arch))
    errors = [
        f"'{key}' = {arch!r} is not a known model; choose from {', '.join(available())}"
        for key, arch in archs
        if not is_known(arch)
    ]
    if errors:
        raise ParamsError("params.yaml is invalid:\n  - " + "\n  - ".join(errors))
