"""evaluate@B-method-seed / evaluate-teacher: retrieval mAP (revisited protocol) of a model on the test split.

The student is ours, so it is run directly. The teacher is reached only through the black box and
a separate test-time gate: those queries are counted apart from the training budget.
"""
import click
import mlflow

from stages.common import ROOT, check_cell, run_name, setup, stage

TEST_STORE = ROOT / "teacher_queries" / "test"


def _log(run_ref, run_name: str, metrics: dict, path) -> None:
    from pipeline import tracking

    tracking.connect(ROOT)
    with tracking.reopen_run(run_ref, run_name):
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlflow.log_artifact(str(path), artifact_path="metrics")


@click.command()
@click.option("--budget", type=int, default=None, help="evaluate the student of this budget ...")
@click.option("--method", default=None, help="... trained by this method ...")
@click.option("--seed", type=int, default=None, help="... with this seed")
@click.option("--teacher", "is_teacher", is_flag=True, help="evaluate the teacher (counted test-time queries)")
@stage
def evaluate(budget, method, seed, is_teacher):
    from pipeline.checkpoint import load_model
    from pipeline.data import prepared
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
        import numpy as np

        from pipeline.teacher.blackbox import open_teacher

        n_test = len(test.query_images) + len(test.db_images)
        gate = open_teacher(ROOT / "models/teacher.pt", TEST_STORE, "test", n_test, device, params.eval.batch_size)
        images = np.concatenate([test.query_images, test.db_images])
        desc = gate.describe(np.arange(n_test), lambda idx: images[idx])
        q_desc, db_desc = desc[:len(test.query_images)], desc[len(test.query_images):]
        extra = {"test_queries": gate.store.count}
        out, run_ref = ROOT / "metrics/teacher.json", ROOT / "models/teacher.mlflow.json"
    else:
        model = load_model(ROOT / f"models/students/{name}.pt", device)
        q_desc = describe(model, test.query_images, params.eval.batch_size, device)
        db_desc = describe(model, test.db_images, params.eval.batch_size, device)
        extra = {"budget": budget, "method": method, "seed": seed}
        out, run_ref = ROOT / f"metrics/students/{name}.json", ROOT / f"models/students/{name}.mlflow.json"
    metrics = retrieval_metrics(q_desc, db_desc, test.gnd, params.eval.kappas)
    metrics.update(extra)
    write_json_atomic(out, metrics)
    who = "teacher" if is_teacher else f"student {name}"
    _log(run_ref, "teacher" if is_teacher else f"student-{name}", metrics, out)
    click.echo(f"{who}: mAP {metrics['map']:.4f} (medium protocol) on {len(q_desc)} queries")


if __name__ == "__main__":
    evaluate()
