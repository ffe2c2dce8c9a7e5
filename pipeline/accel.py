"""Speed settings of ``runtime`` (never a stage dependency: they change how fast, not what is
computed beyond float rounding), each resolved to what is fastest on the device found:

- ``precision``: ``auto`` is bfloat16 autocast on a CUDA GPU that supports it (float16 with a gradient
  scaler on older ones), float32 on the CPU, where autocast does not pay for these small networks;
- ``compile``: ``auto`` compiles the training step's network with ``torch.compile`` on a GPU (it pays
  there, after a compile of tens of seconds), not on the CPU (the compile costs more than a run).
Channels-last memory layout is always used for convolutions (measured: about 1.5x on the CPU).
"""
from __future__ import annotations

import contextlib

import torch


def precision_of(setting: str, device: torch.device) -> str:
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def compile_of(setting: str, device: torch.device) -> bool:
    return device.type == "cuda" if setting == "auto" else setting == "true"


def autocast(precision: str, device: torch.device):
    """The autocast context of ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device):
    """float16 needs its gradients scaled; bfloat16 and float32 do not."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
