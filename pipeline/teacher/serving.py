"""Any teacher built here as an MLflow model, so that ``mlflow models serve`` can put it behind
HTTP and the pipeline can distil it as the black box a real service is (``teacher.kind: mlflow``).

The model takes uint8 images, exactly what the gate sends: ``(n, H, W)`` greyscale or
``(n, H, W, 3)`` colour arrays for the small datasets, one ``(1, H, W, 3)`` photo per request for
the published teachers (which resize and normalise as they always do), and returns one
L2-normalised descriptor per image.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np

SERVED_MODEL = "derd-teacher"  # the registered model that `derd serve-teacher` serves
PIP_REQUIREMENTS = ["torch", "torchvision", "numpy", "pillow"]  # the serving env is this one (--env-manager local)


class TeacherModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import torch

        from pipeline.checkpoint import load_model

        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.device = torch.device("cpu")
        self.model = load_model(Path(context.artifacts["weights"]), self.device)

    def predict(self, context, model_input, params=None):
        images = np.asarray(model_input, dtype=np.uint8)
        if self.model.preprocess is not None:
            from pipeline.teacher.pretrained import describe_images

            return describe_images(self.model, list(images), self.model.preprocess, self.device)
        from pipeline.models.inference import describe

        return describe(self.model, images, 256, self.device)


def signature(card: dict):
    """uint8 images in (their shape as the teacher reads them), float32 descriptors out."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    shape = card.get("input_shape") or [1, -1, -1]
    image = (-1, -1, 3) if card["kind"] != "train" else ((*shape[1:],) if shape[0] == 1 else (*shape[1:], 3))
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *image))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, card["dim"]))]),
    )


def input_example(card: dict) -> np.ndarray:
    """Two images of the shape the teacher receives (a photo teacher: one 64-px photo)."""
    shape = card.get("input_shape") or [3, 64, 64]
    if card["kind"] != "train":
        return np.zeros((1, 64, 64, 3), dtype=np.uint8)
    return np.zeros((2, *shape[1:]) if shape[0] == 1 else (2, *shape[1:], 3), dtype=np.uint8)


def log_teacher_model(teacher_dir: Path, card: dict, name: str = "model"):
    """Log the teacher of ``teacher_dir`` as an MLflow model in the active run; returns its info."""
    package = Path(__file__).resolve().parents[1]
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=TeacherModel(),
        artifacts={"weights": str(Path(teacher_dir) / card["weights"])},
        code_paths=[str(package)],
        signature=signature(card),
        input_example=input_example(card),
        pip_requirements=PIP_REQUIREMENTS,
    )


def save_teacher_model(teacher_dir: Path, card: dict, path: Path) -> Path:
    """The same model as a folder (for servers that load a path, e.g. MLServer's MLflow runtime)."""
    package = Path(__file__).resolve().parents[1]
    mlflow.pyfunc.save_model(
        path=str(path),
        python_model=TeacherModel(),
        artifacts={"weights": str(Path(teacher_dir) / card["weights"])},
        code_paths=[str(package)],
        signature=signature(card),
        pip_requirements=PIP_REQUIREMENTS,
    )
    return Path(path)


def registered_teacher_uri(teacher_dir: Path) -> str:
    """The model URI of the teacher in ``teacher_dir``: logged in its run and registered, once."""
    import mlflow.tracking

    from pipeline import tracking
    from pipeline.errors import TeacherError
    from pipeline.teacher.blackbox import read_card

    card = read_card(teacher_dir)
    client = mlflow.tracking.MlflowClient()
    if "weights" not in card:  # the pipeline points at a server now: serve the teacher registered before
        versions = client.search_model_versions(f"name='{SERVED_MODEL}'") if _is_registered(client) else []
        if not versions:
            raise TeacherError(
                f"{teacher_dir} describes a {card['kind']} teacher at {card.get('endpoint')}, and no "
                f"teacher was registered as {SERVED_MODEL} yet: run `derd serve-teacher` while "
                "teacher.kind is a built one, or pass --model-uri"
            )
        latest = max(versions, key=lambda v: int(v.version))
        return f"models:/{SERVED_MODEL}/{latest.version}"
    exp_id = mlflow.get_experiment_by_name(tracking.experiment_name()).experiment_id
    found = client.search_runs(
        [exp_id], f"tags.role = 'teacher-model' and tags.weights = '{card['weights_sha256']}'", max_results=1
    )
    if found:
        run = found[0]
    else:  # logged once per teacher's weights
        with mlflow.start_run(
            run_name=f"teacher model ({card['arch']})",
            tags={"role": "teacher-model", "weights": card["weights_sha256"]},
        ) as run:
            log_teacher_model(teacher_dir, card)
    run_uri = f"runs:/{run.info.run_id}/model"
    existing = [
        v
        for v in (client.search_model_versions(f"name='{SERVED_MODEL}'") if _is_registered(client) else [])
        if v.run_id == run.info.run_id
    ]
    version = existing[0].version if existing else mlflow.register_model(run_uri, SERVED_MODEL).version
    return f"models:/{SERVED_MODEL}/{version}"


def _is_registered(client) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(SERVED_MODEL)
        return True
    except MlflowException:
        return False
