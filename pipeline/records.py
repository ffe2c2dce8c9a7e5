"""MLflow records of what a run produced, one per evaluated model per configuration.

A record is made from files DVC keeps (a checkpoint, its metrics, the report), never from a stage's
memory, so that outputs DVC restored from its run cache are recorded as well as fresh ones. Each
record carries the configuration it belongs to (``tags.config``, and every setting as a
``config.<key>`` param) and what it was made from (``tags.record``): new settings add records and
never overwrite one, and recording the same outputs twice adds nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlflow

from pipeline import tracking


@dataclass(frozen=True)
class Evaluated:
    """One evaluated model of the run, as files."""

    name: str  # the cell's file stem (pipeline.grid.run_name), or "teacher"
    who: str  # what the runs table calls it, e.g. "B=60 derd seed 0 medium student_deep-128d"
    metrics: dict  # the evaluation's figures (and its costs)
    digest: str  # of what was evaluated and of its evaluation: the same outputs, the same record
    artifacts: tuple[Path, ...] = ()


def record_key(name: str, *digests: str) -> str:
    return ":".join([name, *(d[:16] for d in digests)])


def _log_figures(metrics: dict) -> None:
    mlflow.log_metrics(
        {
            k.replace("@", "_at_"): v
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )


def _log_artifacts(paths) -> None:
    for path in paths:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=path.name)
        elif path.exists():
            mlflow.log_artifact(str(path), artifact_path="metrics" if path.suffix == ".json" else None)


def record_student(
    e: Evaluated,
    config: str,
    settings: dict,
    base_method: str,
    size: str,
    checkpoint: dict,
    checkpoint_digest: str,
    indices_name: str,
) -> str:
    """A student's record: its evaluation under this configuration, with everything its training kept
    (params, curve, the pool images it saw). Returns the run id."""
    from mlflow.entities import Metric

    run_params = json.loads(checkpoint["run_params"])
    tags = {
        "role": "student",
        "record": e.digest,
        "config": config,
        "cell": e.name,
        "checkpoint": checkpoint_digest,
        "budget": str(run_params["budget"]),
        "method": run_params["method"],
        "seed": str(run_params["seed"]),
        "size": run_params["size"],
        "student": f"{run_params['student']['arch']}-{run_params['student']['dim']}d",
    }
    if checkpoint.get("resumed_from"):
        tags["resumed_from_step"] = str(checkpoint["resumed_from"])
    with mlflow.start_run(run_name=tracking.display_name(e.who, e.metrics), tags=tags) as run:
        mlflow.log_params(
            {
                **tracking.flatten(
                    {
                        **run_params,
                        "device": checkpoint["device"],
                        "precision": checkpoint.get("precision"),
                        "compiled": checkpoint.get("compiled"),
                        # train_seconds is wall-clock time with the cores shared by this many students
                        "students_at_once": checkpoint.get("students_at_once"),
                        "threads": checkpoint.get("threads"),
                    }
                ),
                **tracking.configuration_params(settings, base_method, size),
            }
        )
        now = int(time.time() * 1000)
        mlflow.tracking.MlflowClient().log_batch(
            run.info.run_id, metrics=[Metric("train_loss", v, now, int(s)) for s, v in checkpoint["curve"]]
        )
        _log_figures(
            {
                **e.metrics,
                "parameters": sum(p.numel() for p in checkpoint["state_dict"].values()),
                "train_seconds": checkpoint["train_seconds"],
            }
        )
        tracking.log_subset(checkpoint["indices"].numpy(), Path(checkpoint["indices_source"]), indices_name)
        _log_artifacts(e.artifacts)
        return run.info.run_id


def record_teacher(e: Evaluated, config: str, settings: dict, card: dict, training: dict) -> str:
    """The teacher's record: its card, its training curve (a teacher trained here) and its evaluation."""
    tags = {"role": "teacher", "record": e.digest, "config": config, "teacher.kind": card["kind"]}
    with mlflow.start_run(run_name=tracking.display_name(e.who, e.metrics), tags=tags) as run:
        summary = {k: v for k, v in training.items() if k != "history"}
        mlflow.log_params({**tracking.flatten({"teacher": card, **summary}), **tracking.configuration_params(settings)})
        for h in training.get("history", []):
            mlflow.log_metrics({"train_loss": h["loss"], "train_accuracy": h["accuracy"]}, step=h["epoch"])
        _log_figures(e.metrics)
        _log_artifacts(e.artifacts)
        return run.info.run_id


def record_report(e: Evaluated, config: str, settings: dict) -> str:
    """The run's report (tables, claims, pictures) as one record of its configuration."""
    tags = {"role": "report", "record": e.digest, "config": config}
    with mlflow.start_run(run_name=f"report | {e.who}", tags=tags) as run:
        mlflow.log_params(tracking.configuration_params(settings))
        _log_figures(e.metrics)
        _log_artifacts(e.artifacts)
        return run.info.run_id


REGISTERED = "derd-student-B{budget}"  # the registered model of each budget's best student


def register(run_id: str, budget, config: str, load_model: Callable[[], object], example) -> str:
    """A student's record as a version of its budget's registered model. Its model is logged once per
    checkpoint (another configuration's record of the same checkpoint lends its model), and a model
    already registered under that name is not registered again. The version carries the alias
    ``config-<id>``: ``models:/derd-student-B<budget>@config-<id>`` is that configuration's best student,
    whichever configuration ran last."""
    client = mlflow.tracking.MlflowClient()
    name = REGISTERED.format(budget=budget)
    run = client.get_run(run_id)
    model_uri = run.data.tags.get("model_uri")
    if model_uri is None:
        exp_id, digest = run.info.experiment_id, run.data.tags["checkpoint"]
        lent = client.search_runs([exp_id], f"tags.checkpoint = '{digest}' and tags.model_uri != ''", max_results=1)
        if lent:
            model_uri = lent[0].data.tags["model_uri"]
        else:
            with mlflow.start_run(run_id=run_id):
                model_uri = tracking.log_descriptor_model(load_model(), example).model_uri
        client.set_tag(run_id, "model_uri", model_uri)
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except mlflow.exceptions.MlflowException:
        versions = []
    version = next((v.version for v in versions if v.source == model_uri), None)
    if version is None:
        version = mlflow.register_model(model_uri, name).version
    client.set_registered_model_alias(name, f"config-{config}", version)
    return f"{name} v{version}"
