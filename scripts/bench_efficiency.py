"""Student vs teacher descriptor throughput, side by side: the ratio the project targets (>= 5x) with its
spread, at one and at the default number of torch threads.

A teacher built here is timed in this process beside the student: the same device, threads and
batch of ``queries.call_batch`` test images, the calls timed in turn, repeated; the ratio is the
median of the repeats with its range and quartiles. That spread is one process's: a fresh process
can read differently (where its memory and threads land), so the measurement runs in ``--processes``
fresh processes in turn and prints the spread of their medians too. The gate's timings of the teacher's answered
calls (from the ledger of its store) are printed apart: for a served teacher they include the
network, and they are the only figure there is (its ratio is labelled so). No query is made.

  python scripts/bench_efficiency.py [--repeats 15] [--processes 3]   (after `dvc repro dump evaluate-teacher`)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.data import prepared  # noqa: E402
from pipeline.data.images import student_arrays  # noqa: E402
from pipeline.data.tensors import input_channels  # noqa: E402
from pipeline.efficiency import describe_throughput, flops_per_image, parameter_count, side_by_side  # noqa: E402
from pipeline.models import create  # noqa: E402
from pipeline.models.inference import describe  # noqa: E402
from pipeline.params import BUILT_TEACHERS, load_params  # noqa: E402
from pipeline.teacher.blackbox import client_for, open_store, read_card  # noqa: E402
from pipeline.teacher.inputs import TeacherInputs  # noqa: E402


@click.command()
@click.option("--repeats", default=15, show_default=True)
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@click.option("--teacher", "teacher_dir", default="models/teacher", show_default=True, type=click.Path(path_type=Path))
@click.option("--prepared", "prepared_dir", default="data/prepared", show_default=True, type=click.Path(path_type=Path))
@click.option("--processes", default=3, show_default=True, help="fresh processes the side-by-side runs in, in turn")
@click.option("--emit-json", is_flag=True, hidden=True, help="(in a child process) also print each ratio as JSON")
def main(
    repeats: int, params_path: Path, teacher_dir: Path, prepared_dir: Path, processes: int, emit_json: bool
) -> None:
    params = load_params(params_path)
    card = read_card(teacher_dir)
    if processes > 1 and card["kind"] in BUILT_TEACHERS:
        return across_processes(processes, repeats, params_path, teacher_dir, prepared_dir)
    store = open_store(card, params.queries)
    per_call = [
        c.images / c.seconds
        for c in store.calls()
        if c.outcome == "answered" and c.seconds and c.purpose in ("train", "test")
    ]
    built = card["kind"] in BUILT_TEACHERS
    if per_call:
        click.echo(
            f"teacher ({card['kind']}, {card.get('endpoint', 'in-process')}): {len(per_call)} answered calls "
            f"(ledger), median {statistics.median(per_call):,.0f} img/s (min {min(per_call):,.0f}, max "
            f"{max(per_call):,.0f}); "
            + ("timed when made, cold first call included: not the ratio's" if built else "the network included")
        )
    elif not built:
        raise SystemExit(f"no answered teacher call is timed in {store.ledger_path}: run `dvc repro dump` first")
    test = prepared.load_test_split(prepared_dir)
    batch = params.queries.call_batch if isinstance(test.db_images, np.ndarray) else 8
    idx = np.arange(min(len(test.db_images), batch))
    images = student_arrays(test.db_images, params.data.image_size, idx)
    shape = (input_channels(images), *images.shape[1:3])
    sp = params.size()
    student = create(sp.arch, sp.dim, shape[0])
    click.echo(
        f"student {params.student} ({sp.arch}-{sp.dim}d): {parameter_count(student):,} parameters, "
        f"{flops_per_image(student, shape) / 1e6:.2f} MFLOP/image"
    )
    if built:
        client = client_for(card, teacher_dir, params.queries, torch.device("cpu"))
        pixels = TeacherInputs(test.db_images, [str(i) for i in range(len(test.db_images))]).batch(idx)
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        if built:
            t = side_by_side(
                lambda: client(pixels), {"student": lambda: describe(student, images, batch, "cpu")}, len(idx), repeats
            )
            s = t["students"]["student"]
            click.echo(
                f"{threads} thread(s), side by side ({s['repeats']} repeats, {len(idx)} images): teacher "
                f"{t['teacher_images_per_second']:,.0f} img/s, student {s['images_per_second']:,.0f} img/s; "
                f"ratio {s['ratio']:.2f}x (min {s['ratio_min']:.2f}x, max {s['ratio_max']:.2f}x, quartiles "
                f"{s['ratio_q1']:.2f}x to {s['ratio_q3']:.2f}x)"
            )
            if emit_json:
                click.echo("JSON " + json.dumps({"threads": threads, "ratio": s["ratio"]}))
        else:
            speeds = [describe_throughput(student, images, batch) for _ in range(5)]
            ratios = [v / statistics.median(per_call) for v in speeds]
            click.echo(
                f"{threads} thread(s): student {statistics.median(speeds):,.0f} img/s; ratio to the served "
                f"teacher's median call (network included, not like for like): {statistics.median(ratios):.1f}x "
                f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x)"
            )


def across_processes(processes: int, repeats: int, params_path: Path, teacher_dir: Path, prepared_dir: Path) -> None:
    """The side-by-side measurement in ``processes`` fresh processes, one after another: each one's
    lines, then per thread count the median and range of their median ratios."""
    medians: dict[int, list[float]] = {}
    for k in range(processes):
        out = subprocess.run(
            [sys.executable, __file__, "--processes", "1", "--emit-json", "--repeats", str(repeats)]
            + ["--params", str(params_path), "--teacher", str(teacher_dir), "--prepared", str(prepared_dir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            if line.startswith("JSON "):
                r = json.loads(line[5:])
                medians.setdefault(r["threads"], []).append(r["ratio"])
            else:
                click.echo(f"process {k + 1}: {line}")
    for threads, ratios in sorted(medians.items()):
        click.echo(
            f"{threads} thread(s), across {len(ratios)} processes: ratio {statistics.median(ratios):.2f}x "
            f"(the processes' medians {', '.join(f'{r:.2f}x' for r in ratios)}; range {min(ratios):.2f}x to "
            f"{max(ratios):.2f}x)"
        )


if __name__ == "__main__":
    main()
