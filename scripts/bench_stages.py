"""How close each stage is to what its hardware allows: each figure against a bare PyTorch/NumPy
baseline doing the same work on the same inputs, as a ratio (the machine is noisy; the ratio much
less). Runs on the CPU, and on a GPU where one is present (``--device cuda``).

- dump: images per second through the gate (content keys, ledger, durable store) against the
  teacher's bare batched forward pass on the same images;
- training: steps per second of ``train_student`` against a bare loop of the same model, batch
  (real + virtual rows) and listwise loss, both in the precision ``runtime.precision: auto`` picks;
- teacher training: steps per second of ``train_teacher`` (the teacher stage's loop: batches
  converted as drawn, the CosFace head, its one-cycle schedule, loss and accuracy read back each
  step) against a bare loop of the same model, head, loss and loss scaler on images converted once,
  both in the precision ``runtime.precision: auto`` picks on this device;
- search: the exact blocked ranking against a plain matrix product and sort;
- students side by side (CPU): a training stage's three seeds trained at once, one forked process
  each with the cores shared (what ``runtime.students_at_once: 0`` does), against the same three one
  after another with every thread (``students_at_once: 1``), in one forked process: each side pays
  a fresh process's warm-up, as in the stage. Timed first, before this process has run any torch
  work, as the stage forks before it computes anything.

  python scripts/bench_stages.py [--device auto] [--repeats 3]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline import accel, concurrency  # noqa: E402
from pipeline.data.tensors import resolve_device, to_input  # noqa: E402
from pipeline.distill.interpolation import interpolate, sample_triples  # noqa: E402
from pipeline.distill.losses import listwise_ranking_loss  # noqa: E402
from pipeline.distill.train import TrainingData, fused_adamw, train_student  # noqa: E402
from pipeline.models import create  # noqa: E402
from tests.pipeline_copy import repo_params  # noqa: E402


def best_of(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timings (seconds): the least disturbed by other work."""
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def against_bare(ours, bare, repeats: int, steps: int) -> dict:
    """Steps per second of ``ours`` and of ``bare`` (each warmed up once, then the best of ``repeats``)
    and their ratio: the shared part of the training benchmarks."""
    ours(), bare()  # warm-up (and the optimiser's first-use imports)
    t_ours, t_bare = best_of(ours, repeats), best_of(bare, repeats)
    return {
        "train_steps_per_second": steps / t_ours,
        "bare_loop_steps_per_second": steps / t_bare,
        "ratio": t_bare / t_ours,
    }


def bench_dump(device, repeats: int, n: int = 3000) -> dict:
    from pipeline.params import QueriesParams
    from pipeline.teacher.clients import LocalTeacher
    from pipeline.teacher.gate import QueryGate
    from pipeline.teacher.inputs import TeacherInputs
    from pipeline.teacher.store import AnswerStore
    from tests.pipeline_copy import built_teacher

    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        card = built_teacher(Path(tmp) / "teacher", create("teacher_cnn", 128))
        model = create("teacher_cnn", 128).to(device).eval().to(memory_format=torch.channels_last)
        q = QueriesParams(
            store=tmp, call_batch=256, extra_calls=0, timeout_s=60, retries=0, max_backoff_s=1, max_qps=0, verify=0
        )

        teacher = LocalTeacher(card / "weights.pt", device, 256)  # built once, as the bare model is
        names = [str(i) for i in range(n)]

        def gated():  # a fresh store each time: every image is asked, keyed, stored and put on the ledger
            store = AnswerStore(Path(tempfile.mkdtemp(dir=tmp)), {"kind": "bench"})
            QueryGate(teacher, store, q, 128).describe(TeacherInputs(images, names), "train", n)

        @torch.no_grad()
        def bare():
            for i in range(0, n, 256):
                model(to_input(images[i : i + 256], device).contiguous(memory_format=torch.channels_last))

        gated(), bare()  # warm-up
        t_gate, t_bare = best_of(gated, repeats), best_of(bare, repeats)
    return {
        "dump_images_per_second": n / t_gate,
        "bare_forward_images_per_second": n / t_bare,
        "ratio": t_bare / t_gate,
    }


def student_training(device, steps: int):
    """The default student's training (``train_student``, method derd) on 3,000 random images with
    random unit targets and their virtual samples, and the settings it ran with."""
    p = repo_params({"train": {"steps": steps, "log_every": steps}})
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3000, 28, 28), dtype=np.uint8)
    targets = rng.standard_normal((3000, 128)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    triples = sample_triples(targets, p.augment.ratio, p.augment.alpha, "random", 10, np.random.default_rng(1))
    data = TrainingData(images, targets, triples, interpolate(targets, triples))
    method = p.method["derd"]
    sp, tp = p.size(), p.train
    precision = accel.precision_of("auto", device)

    def ours(seed: int = 0):
        train_student(data, sp, tp, method, seed, device, precision=precision)

    return ours, (images, targets, data, method, sp, tp, precision)


def bench_side_by_side(repeats: int, students: int = 3, steps: int = 200) -> dict:
    """Seconds for ``students`` students of ``steps`` steps at once (forked, the cores shared) and one
    after another (every thread, in one forked process), and their ratio."""
    cpu = torch.device("cpu")
    ours, _ = student_training(cpu, steps)
    cores = torch.get_num_threads()
    at_once, threads = concurrency.plan(students, "cpu", 1, 0, 0, cores)
    jobs = [lambda seed=seed: ours(seed) for seed in range(students)]
    names = [f"seed {seed}" for seed in range(students)]
    in_turn = [lambda: [job() for job in jobs]]  # one job, forked (at_once 2 forks even one) with every thread
    side = best_of(lambda: concurrency.run_at_once(jobs, names, at_once, threads), repeats)
    alone = best_of(lambda: concurrency.run_at_once(in_turn, ["in turn"], 2, cores), repeats)
    return {
        "students": students,
        "steps": steps,
        "threads": threads,
        "cores": cores,
        "side_by_side_seconds": side,
        "one_after_another_seconds": alone,
        "ratio": alone / side,
    }


def bench_training(device, repeats: int, steps: int = 60) -> dict:
    ours, (images, targets, data, method, sp, tp, precision) = student_training(device, steps)
    knobs = method.losses.listwise

    def bare():
        torch.manual_seed(0)
        model = create(sp.arch, sp.dim).to(device).to(memory_format=torch.channels_last)
        fused = fused_adamw(device)  # train_student's optimiser
        opt = torch.optim.AdamW(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay, fused=fused)
        x_all = to_input(images, device).contiguous(memory_format=torch.channels_last)
        t_all = torch.as_tensor(targets, device=device)
        tv_all = torch.as_tensor(data.virtual_targets, device=device)
        g = torch.Generator().manual_seed(0)
        scaler = accel.grad_scaler(precision, device)
        for _ in range(steps):
            real = torch.randint(0, 3000, (tp.batch_size,), generator=g).to(device)
            vi = torch.randint(0, tp.batch_size, (tp.virtual_per_batch,), generator=g).to(device)
            vj = torch.randint(0, tp.batch_size, (tp.virtual_per_batch,), generator=g).to(device)
            lam = torch.rand(tp.virtual_per_batch, 1, generator=g).to(device)
            with accel.autocast(precision, device):
                s = model(x_all[real]).float()
            sv = torch.nn.functional.normalize(lam * s[vi] + (1 - lam) * s[vj], dim=-1)
            t = torch.cat([t_all[real], tv_all[: tp.virtual_per_batch]])
            loss = listwise_ranking_loss(t, torch.cat([s, sv]), knobs.tau_teacher, knobs.tau_student)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    return {
        **against_bare(ours, bare, repeats, steps),
        "student": f"{sp.arch}-{sp.dim}d",
        "batch": tp.batch_size + tp.virtual_per_batch,
        "precision": precision,
    }


def bench_teacher_training(device, repeats: int, steps: int = 12) -> dict:
    from pipeline.teacher.train import train_teacher

    p = repo_params({"teacher": {"epochs": 1}}).teacher
    n = steps * p.batch_size  # one epoch of ``steps`` full batches
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    classes = int(labels.max()) + 1
    precision = accel.precision_of("auto", device)

    def ours():
        train_teacher(images, labels, p, 0, device, precision=precision)

    def bare():
        torch.manual_seed(0)
        model = create(p.arch, p.dim).to(device).to(memory_format=torch.channels_last)
        centres = torch.nn.Parameter(torch.randn(classes, p.dim, device=device) * 0.01)
        opt = torch.optim.AdamW([*model.parameters(), centres], lr=p.lr, weight_decay=p.weight_decay)
        x_all = to_input(images, device).contiguous(memory_format=torch.channels_last)
        y_all = torch.as_tensor(labels, device=device)
        scaler = accel.grad_scaler(precision, device)
        for b in range(steps):
            x, y = x_all[b * p.batch_size : (b + 1) * p.batch_size], y_all[b * p.batch_size : (b + 1) * p.batch_size]
            with accel.autocast(precision, device):
                d = model(x)
            cos = d.float() @ torch.nn.functional.normalize(centres, dim=-1).T
            margin = p.margin * torch.nn.functional.one_hot(y, classes).to(cos.dtype)
            loss = torch.nn.functional.cross_entropy(p.scale * (cos - margin), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    return {
        **against_bare(ours, bare, repeats, steps),
        "teacher": f"{p.arch}-{p.dim}d",
        "batch": p.batch_size,
        "precision": precision,
    }


def bench_search(repeats: int, n_db: int = 9000, n_q: int = 1000, d: int = 128) -> dict:
    from pipeline.retrieval.search import rank_database

    rng = np.random.default_rng(0)
    db = rng.standard_normal((n_db, d)).astype(np.float32)
    q = rng.standard_normal((n_q, d)).astype(np.float32)

    def ours():
        rank_database(db, q)

    def bare():
        np.argsort(-(q @ db.T), axis=1, kind="stable")

    ours(), bare()
    t_ours, t_bare = best_of(ours, repeats), best_of(bare, repeats)
    return {
        "search_seconds": t_ours,
        "matmul_and_sort_seconds": t_bare,
        "ratio": t_bare / t_ours,
        "size": f"{n_q} queries x {n_db} database, {d}-d",
    }


@click.command()
@click.option("--device", default="auto", show_default=True)
@click.option("--repeats", default=3, show_default=True)
def main(device: str, repeats: int) -> None:
    dev = resolve_device(device)
    click.echo(f"device {dev}, {torch.get_num_threads()} torch threads; best of {repeats} timings each")
    if dev.type == "cpu":
        a = bench_side_by_side(repeats)
        click.echo(
            f"students: {a['students']} x {a['steps']} steps side by side (a process and {a['threads']} thread(s) "
            f"each) in {a['side_by_side_seconds']:.1f} s vs {a['one_after_another_seconds']:.1f} s one after "
            f"another ({a['cores']} threads): side by side {a['ratio']:.2f}x as fast (the stage's default student, "
            "random data in memory, no checkpoints)"
        )
    d = bench_dump(dev, repeats)
    click.echo(
        f"dump:     {d['dump_images_per_second']:,.0f} img/s through the gate vs "
        f"{d['bare_forward_images_per_second']:,.0f} img/s bare forward: {d['ratio']:.2f}x (target >= 0.9)"
    )
    t = bench_training(dev, repeats)
    click.echo(
        f"training: {t['train_steps_per_second']:.1f} steps/s vs "
        f"{t['bare_loop_steps_per_second']:.1f} bare loop "
        f"({t['student']}, {t['batch']} rows a step, {t['precision']}): {t['ratio']:.2f}x (target >= 0.8)"
    )
    tt = bench_teacher_training(dev, repeats)
    click.echo(
        f"teacher training: {tt['train_steps_per_second']:.2f} steps/s vs "
        f"{tt['bare_loop_steps_per_second']:.2f} bare loop "
        f"({tt['teacher']}, {tt['batch']} images a step, {tt['precision']}): {tt['ratio']:.2f}x (target >= 0.8)"
    )
    s = bench_search(repeats)
    click.echo(
        f"search:   {s['search_seconds'] * 1000:.0f} ms vs {s['matmul_and_sort_seconds'] * 1000:.0f} ms plain "
        f"matrix product and sort ({s['size']}): {s['ratio']:.2f}x (target >= 1)"
    )


if __name__ == "__main__":
    main()
