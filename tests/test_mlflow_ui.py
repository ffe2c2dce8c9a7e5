"""The MLflow UI as a user sees it: `derd ui` on 127.0.0.1, the link it prints opened in a real
browser (Debian's Chromium, headless): the current configuration's records listed with their mAP,
no Assistant panel over them. A screenshot is kept in test-artifacts/mlflow-ui.png."""

import re
import shutil
import subprocess

import pytest

from tests.pipeline_copy import BIN, REPO
from tests.servers import Served, free_port

pytestmark = pytest.mark.e2e


def chromium(*args: str) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Chromium is missing: `apt-get install -y chromium` (`make test` installs it as root)"
    proc = subprocess.run(
        [
            exe,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=6000",
            "--window-size=1600,1000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout


def test_the_ui_opens_on_the_current_configurations_runs_with_their_map(finished_repo, tmp_path):
    import mlflow

    from pipeline.params import load_params
    from pipeline.tracking import workspace_configuration

    config = workspace_configuration(load_params(finished_repo / "params.yaml"), finished_repo / "data/code")[0]
    port = free_port()
    ui = Served(
        [str(BIN / "derd"), "ui", "--port", str(port)],
        finished_repo,
        tmp_path / "ui.log",
        f"http://127.0.0.1:{port}/health",
    )
    try:
        link = re.search(
            r"open (http://derd\.localhost:\d+/#/experiments/\d+/runs\?workflowType=machine_learning"
            r"&searchFilter=\S+)",
            ui.log.read_text(),
        ).group(1)
        assert f"%27{config}%27" in link  # filtered on tags.config of params.yaml's configuration
        shot = REPO / "test-artifacts" / "mlflow-ui.png"
        shot.parent.mkdir(exist_ok=True)
        dom = chromium(f"--screenshot={shot}", "--dump-dom", link)
    finally:
        ui.kill()
    mlflow.set_tracking_uri(f"sqlite:///{finished_repo / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["data-efficient-ranking-distillation"], filter_string=f"tags.config = '{config}'"
    )
    names = runs.loc[runs["tags.role"].isin(["student", "teacher"]), "tags.mlflow.runName"].tolist()
    assert len(names) == 15 and all(n.startswith("mAP 0.") for n in names)
    for name in names:  # every student and the teacher, each with its mAP, in the rendered page
        assert name in dom, f"{name!r} is not on the runs page"
    assert "Overview" not in re.sub(r"<[^>]+>", " ", dom).split("Runs")[0][-200:]  # not the GenAI overview
    assert "MLflow Assistant" not in dom  # its panel would cover a third of the runs
    assert shot.stat().st_size > 20_000
