"""The whole pipeline on a user's own image folder (with one unreadable image, skipped and recorded)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.pipeline_copy import TINY, copy_repo, deep_update, dvc, ledger_total, run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.trains]


def photo_folder(root, per_class=30):
    """Four classes of 36x36 colour images told apart by stripe orientation, plus noise."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:36, 0:36]
    patterns = [np.sin(xx / 2), np.sin(yy / 2), np.sin((xx + yy) / 3), np.sin((xx - yy) / 3)]
    rows = ["path,label"]
    for c, pattern in enumerate(patterns):
        for k in range(per_class):
            grey = 127 + 90 * pattern + rng.normal(0, 25, pattern.shape)
            rgb = np.clip(np.stack([grey] * 3, -1), 0, 255).astype(np.uint8)
            name = f"class{c}/img{k:03d}.png"
            (root / name).parent.mkdir(exist_ok=True)
            Image.fromarray(rgb).save(root / name)
            rows.append(f"{name},class{c}")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    rows.append("broken.jpg,class0")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_folder_dataset_runs_the_whole_pipeline(tmp_path, empty_mlflow_db):
    override = deep_update(
        dict(TINY),
        {
            "budgets": [20, 40],
            "data": {
                "dataset": "folder",
                "raw_dir": "photos",
                "n_queries": 10,
                "test_fraction": 0.3,
                "on_bad_image": "skip",
            },
            "teacher": {"epochs": 15, "train_images": 0, "batch_size": 32},
            "sample": {"val_size": 20, "val_queries": 5},
            "methods": ["derd"],
            "sizes": ["small"],
        },
    )
    repo = copy_repo(tmp_path / "repo", override)
    photo_folder(repo / "photos")
    shutil.copy(empty_mlflow_db, repo / "mlflow.db")
    run_pipeline(repo)
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == "folder" and meta["skipped_images"] == 1 and meta["n_classes"] == 4
    assert meta["pool_size"] + meta["n_queries"] + meta["n_database"] == 120
    assert [s["path"] for s in json.loads((repo / "data/prepared/skipped.json").read_text())] == ["broken.jpg"]
    summary = pd.read_csv(repo / "reports/summary.csv")
    assert summary["budget"].tolist() == [20, 40] * 2 + [20, 20]  # derd-plus (recommended), derd; the levers
    assert summary["map_mean"].between(0, 1).all() and summary["teacher_map"].iloc[0] > 0.5
    assert ledger_total(repo) == 40
    assert json.loads((repo / "metrics/teacher.json").read_text())["test_queries"] == 36
