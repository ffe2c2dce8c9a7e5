"""MLflow tracking: one store and one experiment per project, one run per trained model.

Where runs go is the user's choice through MLflow's own variables, not a stage parameter, so that
moving the store never invalidates a DVC cache:

- ``MLFLOW_TRACKING_URI`` (default: ``sqlite:///<repo>/mlflow.db``),
- ``MLFLOW_EXPERIMENT_NAME`` (default: ``data-efficient-ranking-distillation``).

Artifacts of the default store go to ``<repo>/mlartifacts``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from pipeline.errors import DatasetError, TrackingError  # noqa: E402

DEFAULT_EXPERIMENT = "data-efficient-ranking-distillation"


def tracking_uri(repo_root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(repo_root / 'mlflow.db').resolve()}"


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def _quiet_logging() -> None:
    import logging

    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking", "mlflow.store"):
        logging.getLogger(name).setLevel(logging.WARNING)


def connect(repo_root: Path) -> str:
    """Point MLflow at the project's store and experiment; return the experiment id."""
    import mlflow

    _quiet_logging()
    uri = tracking_uri(repo_root)
    mlflow.set_tracking_uri(uri)
    name = experiment_name()
    try:
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            artifacts = (repo_root / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
            exp_id = mlflow.create_experiment(name, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
    except Exception as exc:  # MLflow raises several types for an unreachable or broken store
        raise TrackingError(
            f"cannot reach the MLflow store {uri} ({type(exc).__name__}: {exc}). Fix MLFLOW_TRACKING_URI "
            f"or unset it to use the local store {repo_root / 'mlflow.db'}"
        ) from exc
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested params -> ``{"train.lr": 0.003, ...}`` as MLflow wants them."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def write_run_ref(path: Path, run_id: str) -> None:
    from pipeline.io import write_json_atomic

    write_json_atomic(path, {"run_id": run_id, "experiment": experiment_name()})


def read_run_ref(path: Path) -> str:
    if not path.exists():
        raise DatasetError(f"{path} not found: it is written by the training stage (dvc repro)")
    return json.loads(path.read_text())["run_id"]


def reopen_run(ref_path: Path, run_name: str):
    """Reopen the run a training stage recorded; if the store no longer has it (a new store, or
    outputs restored from DVC's cache), start a new run of the same name instead of failing."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = read_run_ref(ref_path)
    try:
        mlflow.tracking.MlflowClient().get_run(run_id)
        return mlflow.start_run(run_id=run_id)
    except MlflowException:
        print(f"MLflow run {run_id} (from {ref_path}) is not in {mlflow.get_tracking_uri()}; logging to a new run")
        return mlflow.start_run(run_name=run_name, tags={"recreated_from": run_id})
