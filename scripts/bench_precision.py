"""Training-step time in float32 against bfloat16 autocast on this CPU (what `runtime.precision: auto`
chooses between): the default student and the teacher, channels-last, forward + backward + AdamW step,
interleaved repeats, median and ratio.

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


def step_seconds(arch: str, batch: int, precision: str, steps: int) -> float:
    torch.manual_seed(0)
    model = create(arch, 128).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
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
    click.echo(
        f"CPU with native bfloat16 (AVX512-BF16 or AMX): {accel.cpu_has_bf16_units()}; "
        f"runtime.precision auto -> {auto}; {torch.get_num_threads()} thread(s)"
    )
    for arch, batch, steps in (("student_deep", 128, 20), ("teacher_cnn", 256, 6)):
        times = {"fp32": [], "bf16": []}
        for _ in range(repeats):
            for precision in times:  # interleaved, so drifts in the machine's load hit both alike
                times[precision].append(step_seconds(arch, batch, precision, steps))
        fp32, bf16 = (statistics.median(times[p]) * 1000 for p in ("fp32", "bf16"))
        click.echo(
            f"{arch} ({batch} images/step): fp32 {fp32:.1f} ms, bf16 {bf16:.1f} ms per step: "
            f"bf16 {fp32 / bf16:.2f}x (median of {repeats})"
        )


if __name__ == "__main__":
    main()
