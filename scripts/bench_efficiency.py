"""Student vs teacher descriptor throughput, repeated: the ratio the project targets (>= 5x) with its
spread, at one and at the default number of torch threads.

The teacher is a black box here too: its throughput is what the gate timed on each of its answered
calls (from the ledger of its store), so this works for a served teacher as well; no teacher weights
are read and no query is made. The student is timed the same way (``describe`` on real test
images, in batches of ``queries.call_batch``).

  python scripts/bench_efficiency.py [--repeats 5]   (after `dvc repro dump evaluate-teacher`)
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.data import prepared  # noqa: E402
from pipeline.data.images import student_arrays  # noqa: E402
from pipeline.data.tensors import input_channels  # noqa: E402
from pipeline.efficiency import describe_throughput, flops_per_image, parameter_count  # noqa: E402
from pipeline.models import create  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.teacher.blackbox import open_store, read_card  # noqa: E402


@click.command()
@click.option("--repeats", default=5, show_default=True)
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@click.option("--teacher", "teacher_dir", default="models/teacher", show_default=True, type=click.Path(path_type=Path))
@click.option("--prepared", "prepared_dir", default="data/prepared", show_default=True, type=click.Path(path_type=Path))
def main(repeats: int, params_path: Path, teacher_dir: Path, prepared_dir: Path) -> None:
    params = load_params(params_path)
    card = read_card(teacher_dir)
    store = open_store(card, params.queries)
    per_call = [c.images / c.seconds for c in store.calls() if c.outcome == "answered" and c.seconds
                and c.purpose in ("train", "test")]
    if not per_call:
        raise SystemExit(f"no answered teacher call is timed in {store.ledger_path}: run `dvc repro dump` first")
    teacher_ips = statistics.median(per_call)
    click.echo(f"teacher ({card['kind']}, {card.get('endpoint', 'in-process')}): {len(per_call)} answered calls, "
               f"median {teacher_ips:,.0f} img/s (min {min(per_call):,.0f}, max {max(per_call):,.0f})")
    test = prepared.load_test_split(prepared_dir)
    batch = params.queries.call_batch
    images = student_arrays(test.db_images, params.data.image_size, np.arange(min(len(test.db_images), batch)))
    shape = (input_channels(images), *images.shape[1:3])
    sp = params.size()
    student = create(sp.arch, sp.dim, shape[0])
    click.echo(f"student {params.student} ({sp.arch}-{sp.dim}d): {parameter_count(student):,} parameters, "
               f"{flops_per_image(student, shape) / 1e6:.2f} MFLOP/image")
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        speeds = [describe_throughput(student, images, batch) for _ in range(repeats)]
        ratios = [s / teacher_ips for s in speeds]
        click.echo(f"{threads} thread(s): student {statistics.median(speeds):,.0f} img/s; ratio to the teacher's "
                   f"median call: {statistics.median(ratios):.1f}x (min {min(ratios):.1f}x, max {max(ratios):.1f}x, "
                   f"{repeats} repeats)")


if __name__ == "__main__":
    main()
