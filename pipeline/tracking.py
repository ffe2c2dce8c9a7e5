"""MLflow tracking: one store and one experiment per project; a record per evaluated model per configuration.

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

from pipeline.errors import TrackingError  # noqa: E402

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


def configuration(params, code: dict[str, str] | None = None) -> tuple[str, dict]:
    """The configuration an evaluation belongs to: its id (what the UI filters on, ``tags.config``) and
    its settings. Everything params.yaml decides but how a run executes (``runtime``) and how the
    teacher is called (``queries``), neither of which can change a figure; and, when given, the code
    that made the figures (the stages' fingerprints, pipeline/code_deps.py), so that an edit which
    changes a result starts a new configuration instead of adding a second figure to one."""
    import hashlib

    settings = params.model_dump(mode="json", exclude={"runtime", "queries"})
    keyed = {"settings": settings, "code": dict(sorted((code or {}).items()))} if code else settings
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:10], settings


NOT_FIGURES = {"stages.track", "stages.cli", "stages.code"}  # stage code that makes no figure a record shows


def workspace_configuration(params, code: Path) -> tuple[str, dict]:
    """The configuration of the outputs in a workspace: its params and the code fingerprints the
    ``code`` stage wrote in ``code`` (data/code). The track stage tags records with it, and
    ``derd ui`` and the tests find them by it."""
    made_by = {p.stem: p.read_text() for p in sorted(Path(code).glob("*.txt")) if p.stem not in NOT_FIGURES}
    return configuration(params, made_by)


def configuration_params(settings: dict, method: str | None = None, size: str | None = None) -> dict:
    """A record's view of its configuration as ``config.<key>`` params: every setting, less the
    definitions of the methods and sizes it is not."""
    shown = {k: v for k, v in settings.items() if k not in ("method", "students")}
    if method in settings["method"]:
        shown["method"] = {method: settings["method"][method]}
    if size in settings["students"]:
        shown["students"] = {size: settings["students"][size]}
    return {f"config.{k}": v for k, v in flatten(shown).items()}


def display_name(who: str, metrics: dict) -> str:
    """A record's name: what it is and its mAP, so that the runs table shows both without choosing
    columns (MLflow 3 shows no metric column by default)."""
    protocols = [
        f"{p[0].upper()} {metrics[f'map_{p}']:.3f}" for p in ("easy", "medium", "hard") if f"map_{p}" in metrics
    ]
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


def recorded(exp_id: str, config: str) -> dict[str, object]:
    """The finished records this configuration already has, by their ``record`` tag (what they were
    made from). A record whose logging failed half-way is not one: it is made again."""
    import mlflow

    client = mlflow.tracking.MlflowClient()
    found, token = {}, None
    while True:
        page = client.search_runs(
            [exp_id], f"tags.config = '{config}' and attributes.status = 'FINISHED'", max_results=1000, page_token=token
        )
        found.update({r.data.tags.get("record"): r for r in page})
        token = page.token
        if not token:
            return found


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
    return mlflow.pytorch.log_model(
        wrapped,
        name=name,
        signature=signature,
        input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
        code_paths=[str(package)],
    )


def log_subset(indices, source: Path, name: str, context: str = "training") -> None:
    """The pool images a model was trained on, as an MLflow input dataset (with its digest)."""
    import mlflow.data

    mlflow.log_input(mlflow.data.from_numpy(indices, source=str(source), name=name), context=context)
