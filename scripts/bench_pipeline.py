"""Benchmark of the default pipeline: cold `dvc repro` time, per-stage wall time and peak memory,
no-change `dvc repro` time, teacher and student mAP, and the ledger's query count. A stage's peak is
its largest process's: a training stage's students run side by side, each in a process of its own
(about that much each), and the evaluation's share of them too.

Runs in a fresh copy of the repository (its own DVC cache and MLflow store) so that it measures a
cold run: `python scripts/bench_pipeline.py [--out bench/pipeline.json]`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pipeline_copy import BIN, copy_repo, env, ledger_total  # noqa: E402

PEAK = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def stage_names(repo: Path) -> list[str]:
    out = subprocess.run(
        [str(BIN / "dvc"), "stage", "list", "--name-only"],
        cwd=repo,
        env=env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("bench/repo"))
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/pipeline.json"))
def main(workdir: Path, out: Path) -> None:
    if workdir.exists():
        raise click.ClickException(f"{workdir} exists: remove it for a cold run")
    repo = copy_repo(workdir.resolve())
    stages = []
    start = time.perf_counter()
    for name in stage_names(repo):  # dvc.yaml order is a topological order
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", PEAK, str(BIN / "dvc"), "repro", "--single-item", name],
            cwd=repo,
            env=env(),
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise click.ClickException(f"stage {name} failed:\n{proc.stdout}\n{proc.stderr}")
        peak_kb = int(proc.stdout.rsplit("PEAK_KB", 1)[1].split()[0])
        stages.append({"stage": name, "seconds": round(time.perf_counter() - t0, 1), "peak_mib": round(peak_kb / 1024)})
        click.echo(f"{name:20s} {stages[-1]['seconds']:7.1f} s  {stages[-1]['peak_mib']:6d} MiB peak")
    cold = time.perf_counter() - start
    t0 = time.perf_counter()
    noop = subprocess.run([str(BIN / "dvc"), "repro"], cwd=repo, env=env(), capture_output=True, text=True, check=True)
    no_change = time.perf_counter() - t0
    teacher = json.loads((repo / "metrics/teacher.json").read_text())
    summary = (repo / "reports/summary.md").read_text()
    result = {
        "cold_repro_seconds": round(cold, 1),
        "no_change_repro_seconds": round(no_change, 2),
        "no_change_output": noop.stdout.strip().splitlines()[-1],
        "max_stage_peak_mib": max(s["peak_mib"] for s in stages),
        "teacher_map": teacher["map"],
        "train_queries_in_ledger": ledger_total(repo),
        "stages": stages,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(
        f"\ncold dvc repro: {cold:.0f} s; no-change dvc repro: {no_change:.1f} s "
        f"({result['no_change_output']!r}); max stage peak memory: {result['max_stage_peak_mib']} MiB; "
        f"teacher mAP {teacher['map']:.4f}; ledger: {result['train_queries_in_ledger']} training queries\n"
    )
    click.echo(summary)


if __name__ == "__main__":
    main()
