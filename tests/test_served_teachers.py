"""Teachers you can only query, for real: the default teacher behind `mlflow models serve` on
127.0.0.1 (the same table as in-process; the server's own request count equals the ledger's; the
server killed and restarted mid-dump), a command-line teacher and precomputed descriptors."""

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from pipeline.checkpoint import load_model
from pipeline.models.inference import describe
from tests.pipeline_copy import clone, dvc, edit_params, env, ledger_calls, run_stage
from tests.servers import MlflowServer

pytestmark = pytest.mark.e2e


def requests_in_ledger(repo, kind="mlflow", purpose=None):
    calls = ledger_calls(repo.parent / "teacher-store", purpose, kind)
    return [c for c in calls if c["outcome"] != "unreachable"]


def local_descriptors(repo, images):
    return describe(load_model(repo / "models/teacher/weights.pt"), images, 256, "cpu")


@pytest.fixture(scope="module")
def served(finished_repo, tmp_path_factory):
    repo = clone(finished_repo, tmp_path_factory.mktemp("served") / "run")
    server = MlflowServer(repo)
    yield repo, server
    server.kill()


@pytest.mark.trains
def test_the_default_teacher_served_by_mlflow_gives_the_in_process_table(finished_repo, served):
    repo, server = served
    edit_params(repo, {"teacher": {"kind": "mlflow", "url": server.url}})
    out = dvc(repo, "repro").stdout
    assert "Running stage 'dump'" in out and "Running stage 'evaluate-teacher'" in out
    assert "50 sent this run" in out  # a new teacher identity: nothing reused from the in-process store
    want, got = (pd.read_csv(r / "reports/summary.csv") for r in (finished_repo, repo))
    # a served teacher is not asked about the whole pool (ceiling.run: auto): the random lever is not measured
    assert set(want["method"]) - set(got["method"]) == {"derd-plus-random"}
    both = want.merge(got, on=["method", "budget"], suffixes=("_want", "_got"))
    assert len(both) == len(got) and np.allclose(both["map_mean_want"], both["map_mean_got"], atol=1e-5, rtol=0)
    t_want, t_got = (json.loads((r / "metrics/teacher.json").read_text()) for r in (finished_repo, repo))
    assert abs(t_want["map"] - t_got["map"]) <= 1e-5 and t_got["test_queries"] == 1000
    calls = requests_in_ledger(repo)
    assert sum(c["images"] for c in calls if c["purpose"] == "train") == 50
    assert server.requests() == len(calls) > 0  # the server's own count: every request it got is on the ledger
    status = subprocess.run(
        [sys.executable, "-m", "stages.cli", "status"], cwd=repo, env=env(), capture_output=True, text=True
    )
    assert f"teacher: mlflow, 128-d descriptors, at {server.url}/invocations" in status.stdout
    assert "train: 1 requests, 50 images sent (50 answered, 0 lost" in status.stdout


def test_server_killed_and_restarted_mid_dump(finished_repo, tmp_path):
    repo = clone(finished_repo, tmp_path / "copy")
    server = MlflowServer(repo)
    edit_params(
        repo,
        {
            "budgets": [300],
            "levers": {"budgets": [300]},
            "teacher": {"kind": "mlflow", "url": server.url},
            "queries": {"call_batch": 20, "max_qps": 4, "retries": 150, "max_backoff_s": 1, "extra_calls": 20},
        },
    )
    run_stage(repo, "teacher")
    run_stage(repo, "sample")
    dump = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stages.dump",
            "--teacher",
            "models/teacher",
            "--prepared",
            "data/prepared",
            "--subsets",
            "data/subsets",
            "--out",
            "data/teacher/train_descriptors.npz",
            "--metrics",
            "metrics/queries.json",
        ],
        cwd=repo,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 30
    while server.requests() < 4 and time.time() < deadline and dump.poll() is None:
        time.sleep(0.05)
    assert dump.poll() is None, "the dump ended before the server could be killed"
    server.kill()  # SIGKILL, mid-dump
    time.sleep(1.0)
    server = MlflowServer(repo, port=server.port, log=server.log)  # the same address, its log continued
    try:
        out, _ = dump.communicate(timeout=300)
    finally:
        server.kill()
    assert dump.returncode == 0, out
    with np.load(repo / "data/teacher/train_descriptors.npz") as z:
        pool = np.load(repo / "data/prepared/pool.npz")["images"]
        assert np.allclose(z["descriptors"], local_descriptors(repo, pool[z["indices"]]), atol=1e-6)
    calls = requests_in_ledger(repo, purpose="train")
    outcomes = [c["outcome"] for c in calls]
    assert sum(c["images"] for c in calls if c["outcome"] == "answered") == 300
    unreachable = [
        c for c in ledger_calls(repo.parent / "teacher-store", "train", "mlflow") if c["outcome"] == "unreachable"
    ]
    assert unreachable, "the restart should have been waited for"
    # every request the servers logged is on the ledger; a request cut by the kill is on the ledger as
    # failed (counted against the budget), whether or not the server logged it before it died
    failed = outcomes.count("failed")
    assert failed <= 1 and len(calls) - failed <= server.requests() <= len(calls)


def test_a_command_teacher_is_called_with_png_files(finished_repo, tmp_path):
    repo = clone(finished_repo, tmp_path / "copy")
    script = repo / "my_teacher.py"
    script.write_text(
        "import sys, glob, numpy as np\n"
        "from PIL import Image\n"
        "from pipeline.checkpoint import load_model\n"
        "from pipeline.models.inference import describe\n"
        "files = sorted(glob.glob(sys.argv[1] + '/*.png'))\n"
        "images = np.stack([np.asarray(Image.open(f)) for f in files])\n"
        "np.save(sys.argv[2], describe(load_model('models/teacher/weights.pt'), images, 256, 'cpu'))\n"
    )
    edit_params(
        repo,
        {
            "teacher": {"kind": "command", "command": f"{sys.executable} my_teacher.py {{input}} {{output}}"},
            "queries": {"call_batch": 30},
        },
    )
    run_stage(repo, "teacher")
    out = run_stage(repo, "dump").output
    assert "50 sent this run" in out
    with np.load(repo / "data/teacher/train_descriptors.npz") as z, np.load(repo / "data/prepared/pool.npz") as p:
        assert np.allclose(z["descriptors"], local_descriptors(repo, p["images"][z["indices"]]), atol=1e-6)
    assert [c["images"] for c in requests_in_ledger(repo, "command")] == [30, 20]
    script.write_text(script.read_text() + "# edited\n")  # an edited script is another teacher
    stale = run_stage(repo, "dump", check=False)
    assert stale.exit_code == 1 and "the files it names changed since the teacher stage" in stale.output
    run_stage(repo, "teacher")  # its card now names the edited script: asked anew
    out = run_stage(repo, "dump").output
    assert "50 sent this run" in out and len(list((repo.parent / "teacher-store").glob("command-*"))) == 2


def test_precomputed_descriptors_are_looked_up_by_name_and_never_counted(finished_repo, tmp_path):
    repo = clone(finished_repo, tmp_path / "copy")
    with np.load(repo / "data/prepared/pool.npz") as p, np.load(repo / "data/prepared/test.npz") as t:
        names = np.concatenate([p["names"], t["query_names"], t["db_names"]])
        images = np.concatenate([p["images"], t["query_images"], t["db_images"]])
    np.savez(repo / "mine.npz", names=names, descriptors=local_descriptors(repo, images))
    edit_params(repo, {"teacher": {"kind": "precomputed", "descriptors": "mine.npz"}})
    for name in ("teacher", "dump", "evaluate-teacher"):
        run_stage(repo, name)
    queries = json.loads((repo / "metrics/queries.json").read_text())
    assert queries["sent"] == 0 and queries["spent"] == 0 and queries["store"] is None
    got, want = (json.loads((r / "metrics/teacher.json").read_text()) for r in (repo, finished_repo))
    assert abs(got["map"] - want["map"]) <= 1e-6 and got["test_queries"] == 0
    np.savez(repo / "mine.npz", names=names[:10], descriptors=local_descriptors(repo, images[:10]))
    stale = run_stage(repo, "dump", check=False)  # the file changed behind the teacher stage's back
    assert stale.exit_code == 1 and "mine.npz changed since the teacher stage" in stale.output
    run_stage(repo, "teacher")
    result = run_stage(repo, "dump", check=False)
    assert result.exit_code == 1 and "mine.npz has no descriptor for" in result.output and "train-" in result.output
