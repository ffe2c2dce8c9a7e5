"""Model checkpoints: architecture name, descriptor size and weights, loaded with ``weights_only``."""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from pipeline.io import atomic_write_bytes
from pipeline.models import create


def save_model(path: Path, model: nn.Module, arch: str, extra: dict | None = None) -> None:
    buf = io.BytesIO()
    torch.save({"arch": arch, "dim": model.dim, "state_dict": model.state_dict(), **(extra or {})}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_model(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the stage that makes it (dvc repro)")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = create(ckpt["arch"], ckpt["dim"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
