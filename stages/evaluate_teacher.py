"""evaluate-teacher: the teacher's retrieval mAP on the test split, through the gate.

Its test images are asked of the teacher like any other input, under the purpose ``test``: counted
apart from the training budget, and answered from the store whenever the same pixels were answered
before (a new query/database split of the same test images sends nothing).
"""

from pathlib import Path

import click

from stages.common import params_option, path_option, progress, setup, stage


def test_inputs(test):
    """Queries (cropped to their box) then the database, as the teacher receives them."""
    import numpy as np

    from pipeline.teacher.inputs import TeacherInputs

    if isinstance(test.query_images, np.ndarray):
        images = np.concatenate([test.query_images, test.db_images])
    else:
        images = test.query_images + test.db_images
    return TeacherInputs(images, test.query_names + test.db_names)


@click.command()
@params_option
@path_option("--teacher", help="the teacher's folder (card.json)")
@path_option("--prepared", help="the prepared dataset (test split and ground truth)")
@path_option("--out", help="the metrics JSON")
@path_option("--gallery", help="the fixed queries' top results JSON (the report draws them)")
@path_option(
    "--descriptors",
    help="folder for the teacher's query and database descriptors (float16 .npy, "
    "memory-mappable: asymmetric retrieval reads them)",
)
@stage
def evaluate_teacher(params_path: Path, teacher: Path, prepared: Path, out: Path, gallery: Path, descriptors: Path):
    import numpy as np

    from pipeline import distributed
    from pipeline.data import prepared as prepared_data
    from pipeline.io import save_npy_atomic, write_json_atomic
    from pipeline.pictures import gallery_queries, gallery_rows
    from pipeline.retrieval.metrics import search_and_score
    from pipeline.teacher.blackbox import open_teacher

    params, device = setup(params_path)
    distributed.relaunch(params.runtime.processes)  # under torchrun when runtime.processes > 1
    device = distributed.start(device)
    test = prepared_data.load_test_split(prepared)
    inputs = test_inputs(test)
    access = open_teacher(teacher, params.queries, device)
    if access is None:  # another rank: it described its share of rank 0's calls
        return distributed.stop()
    bar = progress(len(inputs), "teacher test queries")
    desc, stats = access.describe(inputs, "test", len(inputs), bar.update)
    bar.close()
    n_q = len(test.query_names)
    metrics, ranks = search_and_score(desc[:n_q], desc[n_q:], test.gnd, params.eval)
    metrics.update(test_queries=stats["spent"], test_images=len(inputs), sent_this_run=stats["sent"])
    write_json_atomic(out, metrics)
    for name, rows in (("queries", desc[:n_q]), ("database", desc[n_q:])):
        save_npy_atomic(descriptors / f"{name}.npy", rows.astype(np.float16))
    write_json_atomic(gallery, gallery_rows(ranks, test.gnd, gallery_queries(n_q)))
    click.echo(
        f"teacher: mAP {metrics['map']:.4f} (medium protocol) on {n_q} queries; {stats['sent']} test images "
        f"sent this run, {stats['spent']} for this test set in total"
    )
    distributed.stop()


if __name__ == "__main__":
    evaluate_teacher()
