"""evaluate: retrieval mAP (revisited protocol) of one student on the test split.

The student is ours, so it is run directly. A student that learned a projection to the teacher's
space (the regression term: ``regression``, ``derd-plus``) is also evaluated the way such students
are deployed, asymmetrically: its query descriptors, projected, against the database as the teacher
described it once. Its metrics JSON goes to the student's MLflow run in the ``report`` stage."""
from pathlib import Path

import click

from stages.common import params_option, path_option, setup, stage


@click.command()
@click.option("--budget", type=int, default=None, help="the student's budget (none: the full-supervision baseline)")
@click.option("--method", required=True, help="the method it was trained by")
@click.option("--label", default="", help="what the report calls it, when not the method (e.g. derd-plus-ceiling)")
@click.option("--budget-label", default="", help="the budget column's value when not --budget (e.g. pool)")
@click.option("--size", required=True, help="its student size")
@click.option("--seed", type=int, required=True, help="its seed")
@params_option
@path_option("--model", help="the student checkpoint .pt")
@path_option("--prepared", help="the prepared dataset (test split and ground truth)")
@path_option("--teacher-descriptors", help="the teacher's test descriptors folder (for asymmetric retrieval)")
@path_option("--out", help="the metrics JSON")
@path_option("--gallery", help="the fixed queries' top results JSON (the report draws them)")
@stage
def evaluate(budget, method, label, budget_label, size, seed, params_path: Path, model: Path, prepared: Path,
             teacher_descriptors: Path, out: Path, gallery: Path):
    import numpy as np
    import torch

    from pipeline.checkpoint import load_model, skipped
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import array_chunks
    from pipeline.io import write_json_atomic
    from pipeline.models.inference import describe
    from pipeline.pictures import gallery_queries, gallery_rows
    from pipeline.retrieval.metrics import search_and_score

    params, device = setup(params_path)
    cell = dict(budget=budget if budget is not None else "all", method=method if budget is not None else
                "supervised-full", size=size, seed=seed)
    if label:
        cell["method"] = label
    if budget_label:
        cell["budget"] = budget_label
    reason = skipped(model)
    if reason:  # a cell whose inputs were never asked for: reported as not measured
        write_json_atomic(out, {**cell, "skipped": reason})
        write_json_atomic(gallery, {"skipped": reason})
        return click.echo(f"student {model.stem}: not trained ({reason})")
    test = prepared_data.load_test_split(prepared)
    student = load_model(model, device)
    size_px, bs = params.data.image_size, params.eval.batch_size
    q_desc, db_desc = (np.concatenate([describe(student, a, bs, device) for a in array_chunks(images, size_px, 4 * bs)])
                       for images in (test.query_images, test.db_images))
    metrics, ranks = search_and_score(q_desc, db_desc, test.gnd, params.eval)
    projection = torch.load(model, map_location="cpu", weights_only=True).get("projection")
    if projection is not None:  # queries by the student, the database as the teacher described it
        teacher_db = np.load(teacher_descriptors / "database.npy", mmap_mode="r")  # float16, read in blocks
        w, b = projection["weight"].numpy(), projection["bias"].numpy()
        projected = q_desc @ w.T + b
        projected /= np.linalg.norm(projected, axis=1, keepdims=True)
        asym, _ = search_and_score(projected.astype(np.float32), teacher_db, test.gnd, params.eval)
        metrics.update({f"asym_{k}": v for k, v in asym.items()})
    metrics.update(cell)
    write_json_atomic(out, metrics)
    write_json_atomic(gallery, gallery_rows(ranks, test.gnd, gallery_queries(len(q_desc))))
    asym_text = f"; asymmetric (teacher's database) {metrics['asym_map']:.4f}" if "asym_map" in metrics else ""
    click.echo(f"student {model.stem}: mAP {metrics['map']:.4f} (medium protocol) on {len(q_desc)} queries{asym_text}")


if __name__ == "__main__":
    evaluate()
