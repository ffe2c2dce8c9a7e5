"""evaluate@B-method-seed / evaluate-teacher: retrieval mAP (revisited protocol) of a model on the test split.

The student is ours, so it is run directly. The teacher is reached only through the black box and
a separate test-time gate: those queries are counted apart from the training budget. The metrics
JSON goes to the model's MLflow run in the ``report`` stage, which logs every cell in one process
(importing MLflow here cost more than the evaluation itself).
"""
import click

from stages.common import ROOT, check_cell, run_name, setup, stage

TEST_STORE = ROOT / "teacher_queries" / "test"


@click.command()
@click.option("--budget", type=int, default=None, help="evaluate the student of this budget ...")
@click.option("--method", default=None, help="... trained by this method ...")
@click.option("--seed", type=int, default=None, help="... with this seed")
@click.option("--teacher", "is_teacher", is_flag=True, help="evaluate the teacher (counted test-time queries)")
@stage
def evaluate(budget, method, seed, is_teacher):
    import numpy as np

    from pipeline.checkpoint import load_model
    from pipeline.data import prepared
    from pipeline.data.images import array_chunks
    from pipeline.data.tensors import describe
    from pipeline.io import write_json_atomic
    from pipeline.retrieval.metrics import retrieval_metrics

    student = (budget, method, seed)
    if is_teacher == any(v is not None for v in student) or not (is_teacher or all(v is not None for v in student)):
        raise click.UsageError("give either --teacher or all of --budget B --method M --seed S")
    params, device = setup()
    if not is_teacher:
        check_cell(params, budget, method, seed)
        name = run_name(budget, method, seed)
    test = prepared.load_test_split(ROOT / "data/prepared")
    if is_teacher:
        from pipeline.teacher.blackbox import open_teacher

        n_test = len(test.query_images) + len(test.db_images)
        if isinstance(test.query_images, np.ndarray):
            images, batch = np.concatenate([test.query_images, test.db_images]), params.eval.batch_size
        else:  # photo files: queries (cropped to their box) then the database, a few photos per call
            images, batch = test.query_images + test.db_images, 32
        gate = open_teacher(ROOT / "models/teacher.pt", TEST_STORE, "test", n_test, device, batch)
        desc = gate.describe(np.arange(n_test), lambda idx: images[idx])
        q_desc, db_desc = desc[:len(test.query_images)], desc[len(test.query_images):]
        extra = {"test_queries": gate.store.count}
        out = ROOT / "metrics/teacher.json"
    else:
        model = load_model(ROOT / f"models/students/{name}.pt", device)
        size, bs = params.data.image_size, params.eval.batch_size
        q_desc, db_desc = (np.concatenate([describe(model, a, bs, device) for a in array_chunks(images, size, 4 * bs)])
                           for images in (test.query_images, test.db_images))
        extra = {"budget": budget, "method": method, "seed": seed}
        out = ROOT / f"metrics/students/{name}.json"
    metrics = retrieval_metrics(q_desc, db_desc, test.gnd, params.eval.kappas)
    metrics.update(extra)
    write_json_atomic(out, metrics)
    who = "teacher" if is_teacher else f"student {name}"
    click.echo(f"{who}: mAP {metrics['map']:.4f} (medium protocol) on {len(q_desc)} queries")


if __name__ == "__main__":
    evaluate()
