"""Speed settings of ``runtime`` (never a stage dependency: they change how fast, not what is
computed beyond float rounding), each resolved to what is fastest on the device found:

- ``precision``: ``auto`` is bfloat16 autocast on a CUDA GPU that supports it (float16 with a gradient
  scaler on older ones) and on a CPU with bfloat16 matrix units (Intel AMX: measured 1.6x for a student's
  training step and 2.1x for the teacher's on the 2-core reference machine), float32 on other CPUs,
  where autocast emulates bfloat16 and is slower;
- ``compile``: ``auto`` compiles the training step's network with ``torch.compile`` on a GPU (it pays
  there, after a compile of tens of seconds), not on the CPU (the compile costs more than a run).
Channels-last memory layout is always used for convolutions (measured: about 1.5x on the CPU).
"""
from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

import torch


def precision_of(setting: str, device: torch.device) -> str:
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16_units() else "fp32"


@cache
def cpu_has_bf16_units() -> bool:
    """Intel AMX (``amx_bf16``), where oneDNN runs bfloat16 convolutions natively (Linux; elsewhere False)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags.split()


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
