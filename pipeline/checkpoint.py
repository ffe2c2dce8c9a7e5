"""Model checkpoints: architecture name, descriptor size and weights, loaded with ``weights_only``."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline.errors import ArtifactError
from pipeline.io import atomic_write_bytes
from pipeline.models import create


def save_model(path: Path, model: nn.Module, arch: str, extra: dict | None = None) -> None:
    buf = io.BytesIO()
    torch.save(
        {
            "arch": arch,
            "dim": model.dim,
            "in_channels": getattr(model, "in_channels", 1),
            "options": getattr(model, "options", {}),
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def save_skipped(path: Path, reason: str, cell: dict) -> None:
    """A cell that was not trained (its inputs were not asked for), with why: evaluated and reported as such."""
    buf = io.BytesIO()
    torch.save({"skipped": reason, **cell}, buf)
    atomic_write_bytes(path, buf.getvalue())


def skipped(path: Path) -> str | None:
    """Why the checkpoint at ``path`` holds no model, or None for a model."""
    if not Path(path).exists():
        raise ArtifactError(f"{path} not found: run the stage that makes it (dvc repro)")
    return torch.load(path, map_location="cpu", weights_only=True).get("skipped")


def load_model(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} not found: run the stage that makes it (dvc repro)")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = create(ckpt["arch"], ckpt["dim"], ckpt.get("in_channels", 1), **ckpt.get("options", {}))
    model.load_state_dict(ckpt["state_dict"])
    model.preprocess = ckpt.get("preprocess")  # pretrained teachers: how their inputs are prepared
    return model.to(device).eval()


def inputs_key(run_params: dict, input_paths: list[Path]) -> str:
    """What a resumable checkpoint must match: the params and the bytes of every input."""
    h = hashlib.sha256(json.dumps(run_params, sort_keys=True, default=str).encode())
    for path in input_paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()


class FileCheckpointer:
    """Training state in one file, written atomically; ``key`` ties it to the exact inputs and
    params, so a stale state (params changed since) is ignored rather than resumed."""

    def __init__(self, path: Path, key: str, every: int):
        self.path, self.key, self.every = Path(path), key, every

    def load(self, refuse: Callable[[dict], str | None] | None = None) -> dict | None:
        """The saved state, or None to start over; ``refuse(state)`` may name why a state that matches
        the key still cannot be continued (it was made by other code)."""
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged file is not worth failing for: start over
            print(f"ignoring unreadable training checkpoint {self.path} ({exc})")
            return None
        if saved.get("key") != self.key:
            print(f"ignoring training checkpoint {self.path}: made with other params or inputs")
            return None
        reason = refuse(saved["state"]) if refuse else None
        if reason:
            print(f"ignoring training checkpoint {self.path}: {reason}")
            return None
        print(f"resuming training from step {saved['state']['step']} ({self.path})")
        return saved["state"]

    def save(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save({"key": self.key, "state": state}, buf)
        atomic_write_bytes(self.path, buf.getvalue())

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
