"""Student vs teacher descriptor throughput, repeated: the ratio the issue targets (>= 5x) with its
spread, at one and at the default number of torch threads.

  python scripts/bench_efficiency.py [--repeats 5]   (needs models/teacher.pt: `dvc repro teacher`)
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.checkpoint import load_model  # noqa: E402
from pipeline.efficiency import compare_throughput, flops_per_image, parameter_count  # noqa: E402
from pipeline.models import create  # noqa: E402
from pipeline.params import load_params  # noqa: E402


@click.command()
@click.option("--repeats", default=5, show_default=True)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--teacher", default="models/teacher.pt", show_default=True, type=click.Path(path_type=Path))
def main(repeats: int, batch_size: int, teacher: Path) -> None:
    params = load_params("params.yaml")
    models = {"teacher": load_model(teacher),
              "student": create(params.student.arch, params.student.dim)}
    shape = (1, 28, 28)
    for name, m in models.items():
        click.echo(f"{name}: {params.student.arch if name == 'student' else 'teacher'} "
                   f"{parameter_count(m):,} parameters, {flops_per_image(m, shape) / 1e6:.2f} MFLOP/image")
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        ratios, speeds = [], []
        for _ in range(repeats):
            s = compare_throughput(models, shape, batch_size)
            ratios.append(s["student"] / s["teacher"])
            speeds.append(s)
        click.echo(f"{threads} thread(s): teacher {statistics.median(x['teacher'] for x in speeds):,.0f} img/s, "
                   f"student {statistics.median(x['student'] for x in speeds):,.0f} img/s; ratio median "
                   f"{statistics.median(ratios):.1f}x (min {min(ratios):.1f}x, max {max(ratios):.1f}x, "
                   f"{repeats} repeats)")


if __name__ == "__main__":
    main()
