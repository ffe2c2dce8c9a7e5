"""teacher: the teacher's card (``<out>/card.json``): what it is and how to reach it.

- ``teacher.kind: train`` trains the default teacher on the labelled pool (a stand-in for someone
  else's model); ``cirtorch``, ``torchvision``, ``efficientnet-lite`` build a published one with its
  preprocessing. Their weights go to ``<out>/weights.pt``, which only the gate's in-process client
  reads afterwards.
- ``mlflow``, ``kserve-v2``, ``command``, ``precomputed``: a teacher you can only query. The card
  records where it is; the stage checks that it answers (no image is sent).
"""

from pathlib import Path

import click

from stages.common import params_option, path_option, progress, setup, stage


@click.command()
@params_option
@path_option("--prepared", help="the prepared dataset (the labelled pool, for teacher.kind train)")
@path_option("--downloads", help="where published weights are downloaded")
@path_option("--out", help="the teacher's folder: card.json (and weights.pt when built here)")
@path_option("--metrics", help="training metrics JSON")
@stage
def teacher(params_path: Path, prepared: Path, downloads: Path, out: Path, metrics: Path):
    from pipeline import accel
    from pipeline.io import write_json_atomic
    from pipeline.models.registry import check_names
    from pipeline.teacher.card import queried_card

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    tp = params.teacher
    if tp.queried:
        card, summary, logged = queried_card(tp, params.queries, device), {"queried": tp.kind, "dim": tp.dim}, {}
    else:
        precision = accel.precision_of(params.runtime.precision, device)
        card, summary, logged = built_teacher(tp, device, prepared, downloads, out, precision)
    summary.update(logged)  # the track stage puts it in the teacher's MLflow record
    write_json_atomic(out / "card.json", card)
    write_json_atomic(metrics, summary)
    reach = f", {card['parameters']:,} parameters" if card.get("parameters") else f", reached at {card['endpoint']}"
    click.echo(f"teacher ({tp.kind}): {card['dim']}-d descriptors{reach}")


def built_teacher(tp, device, prepared: Path, downloads: Path, out: Path, precision: str) -> tuple[dict, dict, dict]:
    """Trains (in ``precision``) or builds the teacher, saves its weights to ``out/weights.pt``: (card,
    metrics, MLflow params)."""
    from pipeline.checkpoint import save_model
    from pipeline.data import prepared as prepared_data
    from pipeline.teacher.card import build, built_card, training_set, training_steps

    if tp.kind == "train":
        images, labels = training_set(tp, prepared_data.pool_images(prepared), prepared_data.pool_labels(prepared))
        bar = progress(training_steps(tp, len(images)), "teacher")
        built = build(
            tp, device, downloads, images, labels, on_step=lambda step, total: bar.update(1), precision=precision
        )
        bar.close()
    else:
        built = build(tp, device, downloads)
    save_model(out / "weights.pt", built.model, built.arch, extra=built.extra)
    card = built_card(tp, built, out / "weights.pt")
    return card, {**built.summary, "parameters": card["parameters"], "dim": built.model.dim}, built.logged


if __name__ == "__main__":
    teacher()
