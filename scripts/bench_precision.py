"""Training-step time in float32 against bfloat16 autocast on this CPU (what `runtime.precision: auto`
chooses between): the default student and the teacher, channels-last, forward + backward + AdamW step,
interleaved repeats, median and ratio. Beside each, the step's arithmetic rate: its convolution and
matrix-product FLOPs (PyTorch's FlopCounterMode, forward and backward) over the whole step's time, as
a share of this CPU's fastest rate on a large matrix product in the same precision (timed between
the steps' repeats). A share near 100% means the step is its arithmetic; what it lacks is element-wise,
normalisation and optimiser work as well as overhead, which this figure does not tell apart.

  python scripts/bench_precision.py [--repeats 5] [--threads 0]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline import accel  # noqa: E402
from pipeline.models.registry import create  # noqa: E402


def model_and_batch(arch: str, batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """The network (128-d descriptors) and a batch of 28x28 greyscale images, both channels-last."""
    model = create(arch, 128).to(memory_format=torch.channels_last)
    return model, torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)


def step_flops(arch: str, batch: int) -> int:
    """Convolution and matrix-product FLOPs of one training step's forward and backward pass
    (element-wise, normalisation and optimiser work count none)."""
    from torch.utils.flop_counter import FlopCounterMode

    model, x = model_and_batch(arch, batch)
    with FlopCounterMode(display=False) as counter:
        model(x).float().pow(2).sum().backward()
    return int(counter.get_total_flops())


def matmul_rate(precision: str, n: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of the fastest of ``repeats`` n x n matrix products in ``precision``: about what this
    CPU's cores can do (in bf16 only with native bf16 units; emulated, it is slow)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


def step_seconds(arch: str, batch: int, precision: str, steps: int) -> float:
    torch.manual_seed(0)
    model, x = model_and_batch(arch, batch)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    cpu = torch.device("cpu")

    def step():
        with accel.autocast(precision, cpu):
            out = model(x)
        loss = out.float().pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


@click.command()
@click.option("--repeats", default=5, show_default=True)
@click.option("--threads", default=0, help="torch threads; 0 = torch's default")
def main(repeats: int, threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)
    auto = accel.precision_of("auto", torch.device("cpu"))
    native = accel.cpu_has_bf16_units()
    click.echo(
        f"CPU with native bfloat16 (AVX512-BF16 or AMX): {native}; "
        f"runtime.precision auto -> {auto}; {torch.get_num_threads()} thread(s)"
    )
    peak = {"fp32": 0.0, "bf16": 0.0}  # the fastest matrix product, timed between the steps' repeats
    for arch, batch, steps in (("student_deep", 128, 20), ("teacher_cnn", 256, 6)):
        times = {"fp32": [], "bf16": []}
        for _ in range(repeats):
            for precision in times:  # interleaved, so drifts in the machine's load hit both alike
                times[precision].append(step_seconds(arch, batch, precision, steps))
                peak[precision] = max(peak[precision], matmul_rate(precision))
        fp32, bf16 = (statistics.median(times[p]) * 1000 for p in ("fp32", "bf16"))
        flops = step_flops(arch, batch)
        rate = {p: flops / (ms / 1000) for p, ms in (("fp32", fp32), ("bf16", bf16))}
        shares = ", ".join(f"{p} {r / 1e9:.0f} GFLOP/s = {r / peak[p]:.0%}" for p, r in rate.items())
        click.echo(
            f"{arch} ({batch} images/step): fp32 {fp32:.1f} ms, bf16 {bf16:.1f} ms per step: "
            f"bf16 {fp32 / bf16:.2f}x (median of {repeats}); {flops / 1e9:.2f} GFLOP a step (convolutions and "
            f"matrix products): {shares} of the matrix product's rate"
        )
    click.echo(
        f"this CPU's matrix-product rate (2048 x 2048, fastest): fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s" + ("" if native else " (emulated: this CPU has no bf16 units)")
    )


if __name__ == "__main__":
    main()
