"""evaluate: every student of the grid (pipeline.grid) on the test split, in one stage: loading the
test split and starting Python and torch cost more than evaluating one small student. On a CPU the
students are shared between one forked process per core (pipeline/concurrency.py), one thread each:
a small student's description and the protocol's per-query loop keep a second core only partly busy
(the IVF-PQ index, for R1M-size databases, runs alone: its memory is per process). Writes, per
student, ``<out>/<name>.json`` (its metrics, pipeline/retrieval/evaluation.py) and
``<galleries>/<name>.json`` (its top results for the fixed queries, which the report draws). A cell
whose inputs were never asked for (a skipped ceiling) is written as not measured, with why."""

from pathlib import Path

import click

from stages.common import params_option, path_option, setup, stage


@click.command()
@params_option
@path_option("--models", help="the students' checkpoints folder")
@path_option("--prepared", help="the prepared dataset (test split and ground truth)")
@path_option("--teacher-descriptors", help="the teacher's test descriptors folder (for asymmetric retrieval)")
@path_option("--out", help="the students' metrics folder")
@path_option("--galleries", help="the students' gallery folder (the fixed queries' top results)")
@stage
def evaluate(params_path: Path, models: Path, prepared: Path, teacher_descriptors: Path, out: Path, galleries: Path):
    import numpy as np
    import torch

    from pipeline import concurrency
    from pipeline.checkpoint import load_model, skipped
    from pipeline.data import prepared as prepared_data
    from pipeline.grid import grid, run_name, student_path
    from pipeline.io import write_json_atomic
    from pipeline.pictures import gallery_queries, gallery_rows
    from pipeline.retrieval.evaluation import cell_labels, evaluate_student

    params, device = setup(params_path)
    test = prepared_data.load_test_split(prepared)
    teacher_db = lambda: np.load(teacher_descriptors / "database.npy", mmap_mode="r")  # noqa: E731 (float16, in blocks)
    out.mkdir(parents=True, exist_ok=True)
    galleries.mkdir(parents=True, exist_ok=True)
    cells = grid(params).every
    r = params.runtime
    sharing = 1 if params.eval.index == "ivfpq" else r.students_at_once
    at_once, threads = concurrency.plan(
        min(len(cells), torch.get_num_threads()), device.type, 1, sharing, r.threads, torch.get_num_threads()
    )

    def evaluate_each(share):
        for cell in share:
            name = run_name(*cell)
            path = student_path(models, *cell)
            labels = cell_labels(*cell)
            reason = skipped(path)
            if reason:
                write_json_atomic(out / f"{name}.json", {**labels, "skipped": reason})
                write_json_atomic(galleries / f"{name}.json", {"skipped": reason})
                click.echo(f"student {name}: not trained ({reason})")
                continue
            projection = torch.load(path, map_location="cpu", weights_only=True).get("projection")
            metrics, ranks = evaluate_student(
                load_model(path, device), projection, test, teacher_db, params.data.image_size, params.eval, device
            )
            queries = metrics.pop("queries")
            write_json_atomic(out / f"{name}.json", {**metrics, **labels})
            write_json_atomic(galleries / f"{name}.json", gallery_rows(ranks, test.gnd, gallery_queries(queries)))
            asym = f"; asymmetric (teacher's database) {metrics['asym_map']:.4f}" if "asym_map" in metrics else ""
            click.echo(f"student {name}: mAP {metrics['map']:.4f} (medium protocol) on {queries} queries{asym}")

    def job(share):
        def evaluate():  # named as the stage: a child's error reads "error [evaluate]: ..."
            evaluate_each(share)

        return stage(evaluate)

    shares = [cells[i::at_once] for i in range(at_once)]
    names = [f"evaluation {i + 1} of {at_once} ({len(share)} students)" for i, share in enumerate(shares)]
    concurrency.run_at_once([job(share) for share in shares], names, at_once, threads)


if __name__ == "__main__":
    evaluate()
