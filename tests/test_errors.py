"""Bad input gets one clear message that names the file or parameter and the fix; no traceback."""

import io
import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline.data import fashion_mnist
from pipeline.data.folder import load_folder
from pipeline.data.prepared import check_gnd, load_test_split
from pipeline.data.safe_pickle import UnsafePickleError, load_pickle
from pipeline.errors import DatasetError
from pipeline.tracking import TrackingError, connect
from tests.pipeline_copy import REPO, env, set_params, stage_argv


def run_stage(cwd, name):
    """The stage as DVC runs it (its command from dvc.yaml), in a subprocess: what a user sees."""
    e = env()
    e["PYTHONPATH"] = str(REPO)
    module, args = stage_argv(REPO, name)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=e, capture_output=True, text=True)


def write_params(root, override):
    set_params(root, override)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"budgets": [100, 0]}, "'budgets[1]': input should be greater than 0"),
        ({"budgets": [100, 100]}, "'budgets' has duplicates"),
        (
            {"budgets": [100], "students": {"small": {"dim": -4}}},
            "'students.small.dim': input should be greater than 0",
        ),
        ({"budgets": [100], "augment": {"alpha": 0.0}}, "'augment.alpha': input should be greater than 0"),
        ({"budgets": [100], "train": {"methodd": "x"}}, "unknown key 'train.methodd'"),
        ({"budgets": [70000]}, "exceeds the training pool of 60000 images"),
    ],
)
def test_invalid_params_stop_a_stage_cleanly(tmp_path, override, message):
    """In this process (click's runner): the same command and the same one-line error as a subprocess."""
    from tests.pipeline_copy import run_stage as run_in_process

    (tmp_path / "data/prepared").mkdir(parents=True)
    (tmp_path / "data/prepared/pool.json").write_text(json.dumps({"pool_size": 60000}))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    write_params(tmp_path, override)
    result = run_in_process(tmp_path, "sample", check=False)
    assert result.exit_code == 1 and result.output.startswith("error [sample]: ")
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "data/subsets").exists()


def test_an_unknown_model_stops_the_teacher_stage_before_any_training(tmp_path):
    write_params(tmp_path, {"students": {"large": {"arch": "vit_huge"}}})
    proc = run_stage(tmp_path, "teacher")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "'students.large.arch' = 'vit_huge' is not a known model" in proc.stderr
    assert not (tmp_path / "models").exists()


def test_a_bug_keeps_its_traceback(tmp_path):
    """Only the project's own errors become one line: anything else is a bug worth its traceback."""
    import click
    from click.testing import CliRunner

    from stages.common import stage

    @click.command()
    @stage
    def broken():
        raise KeyError("a programming error")

    result = CliRunner().invoke(broken)
    assert isinstance(result.exception, KeyError)


@pytest.mark.parametrize(
    "kind",
    [
        "ParamsError",
        "DatasetError",
        "ArtifactError",
        "WeightsError",
        "BudgetExceeded",
        "TeacherError",
        "TeacherChanged",
        "TrackingError",
    ],
)
def test_every_project_error_stops_a_stage_in_one_line(kind):
    import click
    from click.testing import CliRunner

    from pipeline import errors
    from stages.common import stage

    @click.command()
    @stage
    def failing():
        raise getattr(errors, kind)("what went wrong and the fix")

    result = CliRunner().invoke(failing)
    assert result.exit_code == 1 and result.output == "error [failing]: what went wrong and the fix\n"


def test_missing_dataset_files_say_how_to_get_them(tmp_path):
    write_params(tmp_path, {})
    proc = run_stage(tmp_path, "prepare")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "train-images-idx3-ubyte.gz is missing" in proc.stderr
    assert "apt-get install -y dataset-fashion-mnist" in proc.stderr


def test_truncated_dataset_file_is_named(tmp_path):
    import gzip

    data = (0x0801).to_bytes(4, "big") + (10000).to_bytes(4, "big") + bytes(10000)  # a labels file's layout
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(data[:5000]))
    with pytest.raises(fashion_mnist.DatasetError, match="t10k-labels-idx1-ubyte.gz is truncated"):
        fashion_mnist.read_idx(bad)
    with pytest.raises(fashion_mnist.DatasetError, match="wrong content.*delete it and fetch again"):
        fashion_mnist.verify(bad)


def test_ground_truth_of_the_wrong_shape(tmp_path):
    root = tmp_path
    np.savez(
        root / "test.npz",
        query_images=np.zeros((3, 28, 28), np.uint8),
        db_images=np.zeros((5, 28, 28), np.uint8),
        query_names=np.array(["q0", "q1", "q2"]),
        db_names=np.array([f"d{i}" for i in range(5)]),
    )
    bad_cases = [
        ({"gnd": [{"easy": [0], "hard": [], "junk": []}] * 2}, "'gnd' has 2 entries for 3 queries"),
        ({"imlist": []}, "expected a dict with a 'gnd' list"),
        ({"gnd": [{"ok": [1]}] * 3}, r"gnd\[0\] must be a dict with 'easy', 'hard' and 'junk'"),
        ({"gnd": [{"easy": [9], "hard": [], "junk": []}] * 3}, "indices outside the 5-image database"),
    ]
    for gt, message in bad_cases:
        (root / "gnd.pkl").write_bytes(pickle.dumps(gt))
        with pytest.raises(DatasetError, match=message):
            load_test_split(root)
    check_gnd({"gnd": [{"easy": [4], "hard": [], "junk": [0]}] * 3}, 3, 5, root / "gnd.pkl")


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(tmp_path / "pwned")],))

    (tmp_path / "gnd.pkl").write_bytes(pickle.dumps({"gnd": Evil()}))
    with pytest.raises(UnsafePickleError, match="refused to load global"):
        load_pickle(tmp_path / "gnd.pkl")
    assert not (tmp_path / "pwned").exists()
    ok = {"gnd": [{"easy": np.arange(3), "hard": np.zeros(0, np.int64), "junk": []}], "imlist": ["a"]}
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(ok))
    assert load_pickle(tmp_path / "ok.pkl")["gnd"][0]["easy"].tolist() == [0, 1, 2]


def image_folder(root, n=6, corrupt=(), truncated=()):
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    rng = np.random.default_rng(0)
    for k in range(n):
        name = f"img{k}.png"
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()
        if k in corrupt:
            data = b"this is not an image"
        if k in truncated:
            data = data[: len(data) // 2]
        (root / name).write_bytes(data)
        rows.append(f"{name},{'cat' if k % 2 else 'dog'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_folder_images_are_read_as_greyscale_squares(tmp_path):
    data = load_folder(image_folder(tmp_path / "f"), 28, "stop")
    assert data.images.shape == (6, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [1, 0, 1, 0, 1, 0] and data.skipped == []


@pytest.mark.parametrize("kind", ["corrupt", "truncated"])
def test_bad_image_stops_with_its_name_or_is_skipped_and_recorded(tmp_path, kind):
    root = image_folder(tmp_path / "f", **{kind: (2,)})
    with pytest.raises(fashion_mnist.DatasetError, match=r"img2.png: cannot read this image.*on_bad_image: skip"):
        load_folder(root, 28, "stop")
    data = load_folder(root, 28, "skip")
    assert len(data.images) == 5 and "img2.png" not in data.paths
    assert data.skipped[0]["path"] == "img2.png" and data.skipped[0]["error"]


def test_folder_csv_problems(tmp_path):
    with pytest.raises(fashion_mnist.DatasetError, match="labels.csv not found.*path,label"):
        load_folder(tmp_path, 28, "stop")
    (tmp_path / "labels.csv").write_text("file,class\na.png,1\n")
    with pytest.raises(fashion_mnist.DatasetError, match="header must be 'path,label'"):
        load_folder(tmp_path, 28, "stop")
    (tmp_path / "labels.csv").write_text("path,label\n../../etc/passwd,1\n")
    with pytest.raises(fashion_mnist.DatasetError, match="points outside the dataset folder"):
        load_folder(tmp_path, 28, "stop")


def test_unreachable_mlflow_store_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(TrackingError, match="cannot reach the MLflow store http://127.0.0.1:9.*MLFLOW_TRACKING_URI"):
        connect(tmp_path)


def test_prepare_stage_on_a_folder_with_a_corrupt_image(tmp_path):
    image_folder(tmp_path / "photos", n=20, corrupt=(5,))
    write_params(tmp_path, {"data": {"dataset": "folder", "raw_dir": "photos", "n_queries": 3, "test_fraction": 0.5}})
    proc = run_stage(tmp_path, "prepare")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "img5.png: cannot read this image" in proc.stderr and "on_bad_image: skip" in proc.stderr
    write_params(
        tmp_path,
        {
            "data": {
                "dataset": "folder",
                "raw_dir": "photos",
                "n_queries": 3,
                "test_fraction": 0.5,
                "on_bad_image": "skip",
            }
        },
    )
    proc = run_stage(tmp_path, "prepare")
    assert proc.returncode == 0, proc.stderr
    assert "skipped unreadable image img5.png" in proc.stderr
    assert [s["path"] for s in json.loads((tmp_path / "data/prepared/skipped.json").read_text())] == ["img5.png"]
    meta = json.loads((tmp_path / "data/prepared/meta.json").read_text())
    assert meta["skipped_images"] == 1 and meta["pool_size"] + meta["n_queries"] + meta["n_database"] == 19
