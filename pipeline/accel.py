"""Speed settings of ``runtime`` (never a stage dependency), each resolved to what is fastest on the
device found:

- ``precision``: ``auto`` is bfloat16 autocast on a CUDA GPU that supports it (float16 with a gradient
  scaler on older ones) and, for the teacher's and the students' training, on a CPU with native bfloat16
  arithmetic (AVX512-BF16 or Intel AMX; `python scripts/bench_precision.py` prints the gain), float32
  on other CPUs, where autocast emulates bfloat16 and is slower. Unlike the other settings it can move figures a
  little (checked on the validation split: docs/tuning.md), so each model records the precision it
  was trained in;
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
    return "bf16" if device.type == "cpu" and cpu_has_bf16_units() else "fp32"


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel lists them (Linux; elsewhere none)."""
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()


@cache
def cpu_has_bf16_units() -> bool:
    """Instructions with which oneDNN runs bfloat16 convolutions natively: AVX512-BF16 (``avx512_bf16``:
    AMD Zen 4 and later, Intel Cooper Lake and later) or Intel AMX (``amx_bf16``) where the kernel lets
    this process use it (some VMs and containers do not). Plain AVX-512 only emulates bfloat16."""
    flags = cpu_flags()
    if "avx512_bf16" in flags:
        return True
    init_amx = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)
    return "amx_bf16" in flags and (init_amx is None or bool(init_amx()))


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
