"""An exported student is checked against the PyTorch model it came from (no pipeline run needed)."""

import numpy as np
import torch

from pipeline import export as ex
from pipeline.export_check import parity
from pipeline.models import create
from pipeline.models.deploy import deployable


def test_exported_files_match_the_model_they_came_from(tmp_path):
    torch.manual_seed(0)
    model = deployable(create("student_tiny", 16, 1))
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    database = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    gnd = [{"easy": [q, q + 4], "hard": [], "junk": []} for q in range(4)]
    ex.to_onnx(model, queries[:2], tmp_path / "model.onnx")
    ex.to_torchscript(model, queries[:2], tmp_path / "model.torchscript.pt")
    result = parity(model, tmp_path / "model.onnx", tmp_path / "model.torchscript.pt", queries, database, gnd)
    assert result["ok"] and set(result["map"]) == {"pytorch", "onnx", "torchscript"}
    assert all(d <= 1e-4 for d in result["max_abs_difference_100_images"].values())

    other = deployable(create("student_tiny", 16, 1))  # another network's files do not pass
    ex.to_onnx(other, queries[:2], tmp_path / "other.onnx")
    assert not parity(model, tmp_path / "other.onnx", tmp_path / "model.torchscript.pt", queries, database, gnd)["ok"]
