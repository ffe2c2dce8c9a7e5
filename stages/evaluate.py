"""evaluate@B-method-seed: retrieval mAP (revisited protocol) of a student on the test split.

The student is ours, so it is run directly. Its metrics JSON goes to the student's MLflow run in the
``report`` stage, which logs every cell in one process (importing MLflow here cost more than the
evaluation itself)."""
from pathlib import Path

import click

from stages.common import cell_options, check_cell, params_option, path_option, setup, stage


@click.command()
@cell_options
@params_option
@path_option("--model", help="the student checkpoint .pt")
@path_option("--prepared", help="the prepared dataset (test split and ground truth)")
@path_option("--out", help="the metrics JSON")
@path_option("--gallery", help="the fixed queries' top results JSON (the report draws them)")
@stage
def evaluate(budget: int, method: str, seed: int, params_path: Path, model: Path, prepared: Path, out: Path,
             gallery: Path):
    import numpy as np

    from pipeline.checkpoint import load_model
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import array_chunks
    from pipeline.data.tensors import describe
    from pipeline.io import write_json_atomic
    from pipeline.pictures import gallery_queries, gallery_rows
    from pipeline.retrieval.metrics import rank_and_score

    params, device = setup(params_path)
    check_cell(params, budget, method, seed)
    test = prepared_data.load_test_split(prepared)
    student = load_model(model, device)
    size, bs = params.data.image_size, params.eval.batch_size
    q_desc, db_desc = (np.concatenate([describe(student, a, bs, device) for a in array_chunks(images, size, 4 * bs)])
                       for images in (test.query_images, test.db_images))
    metrics, ranks = rank_and_score(q_desc, db_desc, test.gnd, params.eval.kappas)
    metrics.update(budget=budget, method=method, seed=seed)
    write_json_atomic(out, metrics)
    write_json_atomic(gallery, gallery_rows(ranks, test.gnd, gallery_queries(len(q_desc))))
    click.echo(f"student {model.stem}: mAP {metrics['map']:.4f} (medium protocol) on {len(q_desc)} queries")


if __name__ == "__main__":
    evaluate()
