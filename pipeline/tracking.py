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
# MLflow 3's UI opens an experiment on its GenAI overview unless told it is model training
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


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
            exp_id = mlflow.create_experiment(name, artifact_location=artifacts, tags=EXPERIMENT_KIND)
        else:
            exp_id = exp.experiment_id
            for key, value in EXPERIMENT_KIND.items():
                if exp.tags.get(key) != value:
                    mlflow.tracking.MlflowClient().set_experiment_tag(exp_id, key, value)
    except Exception as exc:  # MLflow raises several types for an unreachable or broken store
        raise TrackingError(
            f"cannot reach the MLflow store {uri} ({type(exc).__name__}: {exc}). Fix MLFLOW_TRACKING_URI "
            f"or unset it to use the local store {repo_root / 'mlflow.db'}"
        ) from exc
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def pipeline_tag(params_path: Path) -> dict[str, str]:
    """Runs made from the same params.yaml share this tag: the UI's "Group by" on it shows each
    pipeline configuration's runs together (nesting them under a parent run would hide them, folded,
    from the runs table)."""
    import hashlib

    return {"pipeline": hashlib.sha256(Path(params_path).read_bytes()).hexdigest()[:10]}


def display_name(who: str, metrics: dict) -> str:
    """A run's name once it is evaluated: what it is and its mAP, so that the runs table shows both
    without choosing columns (MLflow 3 shows no metric column by default)."""
    protocols = [f"{p[0].upper()} {metrics[f'map_{p}']:.3f}" for p in ("easy", "medium", "hard") if f"map_{p}" in metrics]
    return f"mAP {metrics['map']:.4f}" + (f" ({' / '.join(protocols)})" if len(protocols) == 3 else "") + f" | {who}"


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


PIP_REQUIREMENTS = ["torch", "numpy"]  # what loading a logged student needs besides this package's code


def log_descriptor_model(model, example_images, name: str = "model"):
    """A descriptor network as an MLflow Model (PyTorch flavour) that takes uint8 images, with its
    signature and an input example, so that `mlflow models serve` can serve it as it is."""
    import mlflow.pytorch
    import numpy as np
    from mlflow.models import infer_signature

    from pipeline.models.deploy import deployable

    wrapped = deployable(model)
    example = np.ascontiguousarray(example_images[:2])
    from pipeline.export import torch_descriptors

    signature = infer_signature(example, torch_descriptors(wrapped, example))
    package = Path(__file__).resolve().parent
    return mlflow.pytorch.log_model(wrapped, name=name, signature=signature, input_example=example,
                                    pip_requirements=PIP_REQUIREMENTS, code_paths=[str(package)])


def log_subset(indices, source: Path, name: str, context: str = "training") -> None:
    """The pool images a model was trained on, as an MLflow input dataset (with its digest)."""
    import mlflow.data

    mlflow.log_input(mlflow.data.from_numpy(indices, source=str(source), name=name), context=context)
