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

from stages.common import load, params_option, stage

TEACHER = Path("models/teacher")


def tool(name: str) -> str:
    """A command of this environment (``dvc``, ``mlflow``), also when its bin folder is not on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Data-efficient ranking distillation: shrink a retrieval model you can only query."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


@main.command("serve-teacher")
@click.option("--port", default=5001, show_default=True, help="port on 127.0.0.1")
@click.option(
    "--teacher",
    "teacher_dir",
    default=TEACHER,
    show_default=True,
    type=click.Path(path_type=Path),
    help="the teacher's folder (the teacher stage's output)",
)
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
    from pipeline.teacher.serving import registered_teacher_uri

    tracking.connect(Path.cwd())
    uri, what = model_uri or registered_teacher_uri(teacher_dir), model_uri or "the teacher"
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking.tracking_uri(Path.cwd()))
    argv = [
        tool("mlflow"),
        "models",
        "serve",
        "-m",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--env-manager",
        "local",
        "--workers",
        str(workers),
    ]
    click.echo(
        f"serving {what} at http://127.0.0.1:{port} ({uri}); distil it with teacher.kind: mlflow, "
        f"teacher.url: http://127.0.0.1:{port}",
        err=True,
    )
    sys.exit(subprocess.call(argv, env=env))


@main.command()
@params_option
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
    proc = subprocess.run([tool("dvc"), "status", "-q"], capture_output=True, text=True)
    stale = (
        "up to date"
        if proc.returncode == 0
        else "stale stages (dvc status): "
        + ", ".join(
            line.strip().rstrip(":")
            for line in subprocess.run([tool("dvc"), "status"], capture_output=True, text=True).stdout.splitlines()
            if line and not line.startswith((" ", "\t"))
        )
    )
    click.echo(f"pipeline: {stale}")
    click.echo(f"MLflow store: {tracking.tracking_uri(Path.cwd())} (experiment {tracking.experiment_name()})")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "-S",
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="a params.yaml value for this run only (a DVC experiment); repeatable",
)
@click.option("--queue", is_flag=True, help="queue the experiment instead (`dvc queue start -j N` runs the queue)")
@click.argument("dvc_args", nargs=-1, type=click.UNPROCESSED)
def run(overrides: tuple[str, ...], queue: bool, dvc_args: tuple[str, ...]):
    """Run the pipeline: `dvc repro`, or `dvc exp run` with -S overrides (kept as a DVC experiment).

    \b
      derd run                                   # the whole pipeline, as params.yaml says
      derd run -S 'budgets=[60,300]' -S seeds=[0,1]
      derd run -S teacher.kind=mlflow -S teacher.url=http://127.0.0.1:5001
    """
    if overrides or queue:
        argv = [tool("dvc"), "exp", "run", *[a for o in overrides for a in ("-S", o)], *(["--queue"] if queue else [])]
    else:
        argv = [tool("dvc"), "repro"]
    sys.exit(subprocess.call([*argv, *dvc_args]))


@main.command()
@click.option("--reports", default=Path("reports"), show_default=True, type=click.Path(path_type=Path))
@stage
def report(reports: Path):
    """The summary table of the last run in the terminal: mAP per method and budget, % of the teacher.

    \b
      derd report
    """
    import pandas as pd

    from pipeline.errors import ArtifactError

    path = reports / "summary.csv"
    if not path.exists():
        raise ArtifactError(f"{path} not found: run the pipeline first (`derd run` or `make run`)")
    df = pd.read_csv(path)
    table = df.pivot(index="method", columns="budget", values="map_mean").loc[list(dict.fromkeys(df["method"]))]
    ratio = df.pivot(index="method", columns="budget", values="ratio").loc[table.index]
    cells = table.map(lambda v: f"{v:.4f}")
    if df["seeds"].max() > 1:
        std = df.pivot(index="method", columns="budget", values="map_std").loc[table.index]
        cells += std.map(lambda v: f" ± {v:.4f}")
    cells += ratio.map(lambda r: f" ({100 * r:.0f}%)")
    cells.columns = [f"B={b}" for b in cells.columns]
    click.echo(
        f"mAP (Medium protocol); teacher mAP {df['teacher_map'].iloc[0]:.4f}; mean over {df['seeds'].max()} "
        "seed(s), (% of the teacher)"
    )
    click.echo(cells.to_string())
    if (reports / "claims.md").exists():
        click.echo(f"\n{(reports / 'claims.md').read_text().strip()}")


UI_HOST = "derd.localhost"  # loopback by name (browsers resolve *.localhost themselves): see `ui`


def ui_link(port: int, exp_id: str, config: str | None) -> str:
    """The runs page of the project's experiment, filtered on one configuration's records."""
    from urllib.parse import urlencode

    query = {"workflowType": "machine_learning"}  # MLflow 3.17 opens experiments on its GenAI pages otherwise
    if config:
        query["searchFilter"] = f"tags.config = '{config}'"
    return f"http://{UI_HOST}:{port}/#/experiments/{exp_id}/runs?{urlencode(query)}"


@main.command()
@click.option("--port", default=5000, show_default=True, help="port on 127.0.0.1")
@params_option  # the configuration to open on
def ui(port: int, params_path: Path):
    """The MLflow UI on 127.0.0.1; prints the link that opens on the runs of params.yaml's configuration.

    The link names the server derd.localhost (which browsers resolve to 127.0.0.1 themselves): MLflow's UI
    opens its Assistant panel over a third of the page on a first visit to "localhost" or "127.0.0.1".

    \b
      derd ui --port 5000      # then open the link it prints
    """
    from pipeline import tracking
    from pipeline.errors import DerdError

    uri = tracking.tracking_uri(Path.cwd())
    exp_id = tracking.connect(Path.cwd())
    try:
        config = tracking.workspace_configuration(load(params_path), Path("data/code"))[0]
    except DerdError as exc:
        config = None
        click.echo(f"{params_path} is not valid ({exc}): the link shows every configuration", err=True)
    if config and not tracking.recorded(exp_id, config):
        click.echo(
            f"no record of {params_path}'s configuration {config} yet (`dvc repro` makes them): the link "
            "shows every configuration",
            err=True,
        )
        config = None
    link = ui_link(port, exp_id, config)
    click.echo(
        f"MLflow UI for {uri}: open {link}\n(a browser that does not resolve *.localhost, e.g. an older "
        f"Safari: {link.replace(UI_HOST, '127.0.0.1', 1)}, where MLflow opens its Assistant panel once)",
        err=True,
    )
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no background job runner: faster start
    sys.exit(
        subprocess.call(
            [
                tool("mlflow"),
                "ui",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--allowed-hosts",
                f"{UI_HOST}:{port},localhost:{port},127.0.0.1:{port}",
                "--cors-allowed-origins",
                f"http://{UI_HOST}:{port}",
            ],
            env=env,
        )
    )


@main.command()
@click.argument("student", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="folder for the exported files [default: exports/<student's name>]",
)
@click.option(
    "--prepared",
    default=Path("data/prepared"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="the prepared dataset: its test split checks the exported model",
)
@params_option
@stage
def export(student: Path, out: Path | None, prepared: Path, params_path: Path):
    """Export a student as ONNX (dynamic batch) and TorchScript, uint8 images in, and check both.

    Parity: onnxruntime against PyTorch on 100 test images (max abs difference <= 1e-4) and the
    retrieval mAP of each exported model against the original's (within 1e-4).

    \b
      derd export models/students/3000-derd-plus-medium/3000-derd-plus-medium-0.pt
    """
    from pipeline import export as ex
    from pipeline.checkpoint import load_model
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.errors import ArtifactError
    from pipeline.export_check import parity as export_parity
    from pipeline.io import write_json_atomic
    from pipeline.models.deploy import deployable

    params = load(params_path)
    out = out or Path("exports") / student.stem
    model = deployable(load_model(student))
    test = prepared_data.load_test_split(prepared)
    size = params.data.image_size
    queries, database = (student_arrays(x, size) for x in (test.query_images, test.db_images))
    ex.to_onnx(model, queries[:2], out / "model.onnx")
    ex.to_torchscript(model, queries[:2], out / "model.torchscript.pt")
    parity = export_parity(model, out / "model.onnx", out / "model.torchscript.pt", queries, database, test.gnd)
    write_json_atomic(out / "parity.json", parity)
    diffs, maps = parity["max_abs_difference_100_images"], parity["map"]
    for fmt in ("onnx", "torchscript"):
        click.echo(
            f"{fmt}: max |difference| {diffs[fmt]:.2e} on 100 images; mAP {maps[fmt]:.6f} "
            f"(PyTorch {maps['pytorch']:.6f})"
        )
    click.echo(f"wrote {out / 'model.onnx'}, {out / 'model.torchscript.pt'}, {out / 'parity.json'}")
    if not parity["ok"]:
        raise ArtifactError(
            f"the exported model does not match the original (see {out / 'parity.json'}); do not deploy it"
        )


if __name__ == "__main__":
    main()
