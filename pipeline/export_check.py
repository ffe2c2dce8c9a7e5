"""Whether an exported student answers as the PyTorch model does: onnxruntime and TorchScript against
PyTorch on real images, and the retrieval mAP of each exported model against the original's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import export as ex
from pipeline.models.deploy import ImageDescriptor
from pipeline.retrieval.metrics import retrieval_metrics

TOLERANCE = 1e-4  # on the largest descriptor difference, and on each mAP
SAMPLE_IMAGES = 100  # database images the descriptors are compared on


def parity(
    model: ImageDescriptor,
    onnx_file: Path,
    torchscript_file: Path,
    queries: np.ndarray,
    database: np.ndarray,
    gnd: list[dict],
) -> dict:
    """The largest |difference| of each exported file's descriptors from PyTorch's on the first
    ``SAMPLE_IMAGES`` database images, each one's mAP on the test split, and whether all are within
    ``TOLERANCE`` (``ok``)."""
    onnx, script = ex.OnnxDescriptor(onnx_file), ex.load_torchscript(torchscript_file)
    sample = database[:SAMPLE_IMAGES]
    want = ex.torch_descriptors(model, sample)
    diffs = {
        "onnx": float(np.abs(onnx(sample) - want).max()),
        "torchscript": float(np.abs(script(sample) - want).max()),
    }
    maps = {
        "pytorch": retrieval_metrics(ex.torch_descriptors(model, queries), ex.torch_descriptors(model, database), gnd)[
            "map"
        ]
    }
    maps["onnx"] = retrieval_metrics(onnx(queries), onnx(database), gnd)["map"]
    maps["torchscript"] = retrieval_metrics(script(queries), script(database), gnd)["map"]
    return {
        "max_abs_difference_100_images": diffs,
        "map": maps,
        "ok": all(d <= TOLERANCE for d in diffs.values())
        and all(abs(m - maps["pytorch"]) <= TOLERANCE for m in maps.values()),
    }
