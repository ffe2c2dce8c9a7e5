"""``derd``: the command a user types (the DVC stages are the other commands in this folder).

Run from the repository root; every path defaults to the one dvc.yaml uses.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from stages.common import load, stage

TEACHER = Path("models/teacher")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Data-efficient ranking distillation: shrink a retrieval model you can only query."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


SERVED_MODEL = "derd-teacher"  # the registered model that `serve-teacher` serves


@main.command("serve-teacher")
@click.option("--port", default=5001, show_default=True, help="port on 127.0.0.1")
@click.option("--teacher", "teacher_dir", default=TEACHER, show_default=True, type=click.Path(path_type=Path),
              help="the teacher's folder (the teacher stage's output)")
@click.option("--model-uri", default="", help="serve this MLflow model instead (e.g. models:/derd-teacher/2)")
@click.option("--workers", default=1, show_default=True, help="server processes")
@stage
def serve_teacher(port: int, teacher_dir: Path, model_uri: str, workers: int):
    """Serve the teacher built here over HTTP with `mlflow models serve`, as a black box.

    The teacher is logged as an MLflow model in its own run and registered as `derd-teacher`
    (once per teacher), then served on 127.0.0.1 until Ctrl-C. Once the pipeline points at the
    server (teacher.kind: mlflow), models/teacher describes the server, and `derd serve-teacher`
    serves the latest registered version again. Distil it through real HTTP calls:

    \b
      derd serve-teacher --port 5001      # in one terminal
      dvc exp run -S teacher.kind=mlflow -S teacher.url=http://127.0.0.1:5001
    """
    from pipeline import tracking

    tracking.connect(Path.cwd())
    uri, what = model_uri or _register_teacher(teacher_dir), model_uri or "the teacher"
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking.tracking_uri(Path.cwd()))
    argv = [shutil.which("mlflow") or "mlflow", "models", "serve", "-m", uri, "--host", "127.0.0.1",
            "--port", str(port), "--env-manager", "local", "--workers", str(workers)]
    click.echo(f"serving {what} at http://127.0.0.1:{port} ({uri}); distil it with teacher.kind: mlflow, "
               f"teacher.url: http://127.0.0.1:{port}", err=True)
    sys.exit(subprocess.call(argv, env=env))


def _register_teacher(teacher_dir: Path) -> str:
    """The model URI of the teacher in ``teacher_dir``: logged in its run and registered, once."""
    import mlflow

    from pipeline import tracking
    from pipeline.errors import TeacherError
    from pipeline.teacher.blackbox import read_card
    from pipeline.teacher.serving import log_teacher_model

    card = read_card(teacher_dir)
    client = mlflow.tracking.MlflowClient()
    if "weights" not in card:  # the pipeline points at a server now: serve the teacher registered before
        versions = client.search_model_versions(f"name='{SERVED_MODEL}'") if _registered(client) else []
        if not versions:
            raise TeacherError(f"{teacher_dir} describes a {card['kind']} teacher at {card.get('endpoint')}, and no "
                               f"teacher was registered as {SERVED_MODEL} yet: run `derd serve-teacher` while "
                               "teacher.kind is a built one, or pass --model-uri")
        latest = max(versions, key=lambda v: int(v.version))
        return f"models:/{SERVED_MODEL}/{latest.version}"
    with tracking.reopen_run(teacher_dir / "mlflow.json", "teacher") as run:
        if "model" not in {a.path for a in client.list_artifacts(run.info.run_id)}:
            log_teacher_model(teacher_dir, card)
        run_uri = f"runs:/{run.info.run_id}/model"
    existing = [v for v in (client.search_model_versions(f"name='{SERVED_MODEL}'") if _registered(client) else [])
                if v.run_id == run.info.run_id]
    version = existing[0].version if existing else mlflow.register_model(run_uri, SERVED_MODEL).version
    return f"models:/{SERVED_MODEL}/{version}"


def _registered(client) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(SERVED_MODEL)
        return True
    except MlflowException:
        return False


@main.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@stage
def status(params_path: Path):
    """Budgets, teacher calls made and left per the ledger, stale stages, where the stores are.

    \b
      derd status
    """
    from pipeline import tracking
    from pipeline.teacher.status import teacher_status

    params = load(params_path)
    click.echo(teacher_status(params, TEACHER))
    proc = subprocess.run(["dvc", "status", "-q"], capture_output=True, text=True)
    stale = "up to date" if proc.returncode == 0 else "stale stages (dvc status): " + ", ".join(
        line.strip().rstrip(":") for line in subprocess.run(["dvc", "status"], capture_output=True, text=True)
        .stdout.splitlines() if line and not line.startswith((" ", "\t")))
    click.echo(f"pipeline: {stale}")
    click.echo(f"MLflow store: {tracking.tracking_uri(Path.cwd())} (experiment {tracking.experiment_name()})")


if __name__ == "__main__":
    main()
