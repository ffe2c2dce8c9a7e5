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
import mlflow

from stages.common import params_option, path_option, progress, setup, stage


def input_shape(params, pool_images) -> tuple[int, ...]:
    """What one teacher input looks like, for counting its FLOPs: the pool's arrays, or a 4:3 photo at
    the published teacher's resolution."""
    if params.teacher.kind == "train":
        return (3, *pool_images.shape[1:3]) if pool_images.ndim == 4 else (1, *pool_images.shape[1:3])
    return (3, params.teacher.image_size * 3 // 4, params.teacher.image_size)


@click.command()
@params_option
@path_option("--prepared", help="the prepared dataset (the labelled pool, for teacher.kind train)")
@path_option("--downloads", help="where published weights are downloaded")
@path_option("--out", help="the teacher's folder: card.json, weights.pt, mlflow.json")
@path_option("--metrics", help="training metrics JSON")
@stage
def teacher(params_path: Path, prepared: Path, downloads: Path, out: Path, metrics: Path):
    from pipeline import tracking
    from pipeline.models.registry import check_names
    from pipeline.io import write_json_atomic

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    tp = params.teacher
    tracking.connect(Path.cwd())
    if tp.queried:
        card, summary, logged = queried_card(params, device), {"queried": tp.kind, "dim": tp.dim}, {}
    else:
        card, summary, logged = built_teacher(params, device, prepared, downloads, out)
    tags = {"role": "teacher", "teacher.kind": tp.kind, **tracking.pipeline_tag(params_path)}
    with mlflow.start_run(run_name="teacher", tags=tags) as run:
        mlflow.log_params(tracking.flatten({"teacher": card, **logged}))
        for h in summary.pop("history", []):
            mlflow.log_metrics({"train_loss": h["loss"], "train_accuracy": h["accuracy"]}, step=h["epoch"])
        if card.get("parameters"):
            mlflow.log_metric("parameters", card["parameters"])
            from pipeline.teacher.serving import log_teacher_model

            log_teacher_model(out, card)  # an MLflow Model: `derd serve-teacher` puts it behind HTTP
        tracking.write_run_ref(out / "mlflow.json", run.info.run_id)
    write_json_atomic(out / "card.json", card)
    write_json_atomic(metrics, summary)
    click.echo(f"teacher ({tp.kind}): {card['dim']}-d descriptors" +
               (f", {card['parameters']:,} parameters" if card.get("parameters") else f", reached at {card['endpoint']}"))


def built_teacher(params, device, prepared: Path, downloads: Path, out: Path) -> tuple[dict, dict, dict]:
    import math

    from pipeline.checkpoint import save_model
    from pipeline.data import prepared as prepared_data
    from pipeline.efficiency import flops_per_image, parameter_count
    from pipeline.io import file_sha256

    tp = params.teacher
    if tp.kind == "train":
        from pipeline.teacher.train import train_teacher

        images = prepared_data.pool_images(prepared)
        labels = prepared_data.pool_labels(prepared)
        if tp.train_images:
            images, labels = images[:tp.train_images], labels[:tp.train_images]
        bar = progress(tp.epochs * math.ceil(len(images) / tp.batch_size), "teacher")
        model, history = train_teacher(images, labels, tp, tp.seed, device, on_step=lambda step, total: bar.update(1))
        bar.close()
        arch, extra = tp.arch, {}
        summary = {"history": [h.__dict__ for h in history]}
        logged = {"train_images": len(images), "device": str(device)}
        shape = input_shape(params, images)
    else:
        from pipeline.teacher import pretrained

        model, pre, source = pretrained.build(tp, downloads)
        arch, extra = source["architecture"], {"preprocess": pre.as_dict()}
        summary, logged = {"pretrained": source}, {"source": source, "preprocess": pre.as_dict()}
        shape = input_shape(params, None)
    model = model.cpu().eval()
    save_model(out / "weights.pt", model, arch, extra=extra)
    card = {"kind": tp.kind, "arch": arch, "dim": model.dim, "weights": "weights.pt",
            "weights_sha256": file_sha256(out / "weights.pt"), "parameters": parameter_count(model),
            "flops_per_image": flops_per_image(model, shape), "input_shape": list(shape)}
    summary.update(parameters=card["parameters"], dim=model.dim)
    return card, summary, logged


def queried_card(params, device) -> dict:
    """Where the teacher is, checked to answer (a ping, its metadata, its file), without sending an image."""
    from pipeline.teacher.blackbox import client_for

    tp = params.teacher
    card = {"kind": tp.kind, "dim": tp.dim, "url": tp.url, "model": tp.model, "command": tp.command,
            "descriptors": tp.descriptors, "auth_env": tp.auth_env, "auth_header": tp.auth_header}
    if tp.kind == "precomputed":
        from pipeline.teacher.precomputed import PrecomputedDescriptors

        source = PrecomputedDescriptors(Path(tp.descriptors), tp.dim)
        card.update(endpoint=f"{tp.descriptors} (precomputed)", descriptors_sha256=source.sha256)
    else:
        client = client_for(card, Path("."), params.queries, device)
        card["endpoint"] = client.endpoint
        if tp.kind == "command":  # an edited script is another teacher: the card (and so the dump) changes
            card["files"] = client.named_files()
    return card


if __name__ == "__main__":
    teacher()
