"""A student for deployment: ONNX (dynamic batch) and TorchScript files of its uint8-in form, and
the checks that they answer as the PyTorch model does (onnxruntime against PyTorch on real images,
and the retrieval mAP of the exported model against the original's)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from pipeline.io import atomic_write_bytes
from pipeline.models.deploy import ImageDescriptor


def to_onnx(model: ImageDescriptor, example: np.ndarray, path: Path) -> None:
    """ONNX with a dynamic batch axis (uint8 images in, descriptors out)."""
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript-based exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.from_numpy(example),),
            buf,
            input_names=["images"],
            output_names=["descriptors"],
            dynamic_axes={"images": {0: "batch"}, "descriptors": {0: "batch"}},
            dynamo=False,
        )
    atomic_write_bytes(path, buf.getvalue())


def to_torchscript(model: ImageDescriptor, example: np.ndarray, path: Path) -> None:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(model, torch.from_numpy(example)), buf)
    atomic_write_bytes(path, buf.getvalue())


class OnnxDescriptor:
    """The exported file run by onnxruntime: batches of uint8 images to descriptors."""

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        out = [
            self.session.run(None, {"images": images[i : i + batch_size]})[0] for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out).astype(np.float32)


@torch.no_grad()
def torch_descriptors(model: ImageDescriptor, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    return torch.cat(
        [model(torch.from_numpy(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    ).numpy()


def load_torchscript(path: Path):
    """The TorchScript file as a function of uint8 image batches."""
    module = torch.jit.load(str(path)).eval()

    @torch.no_grad()
    def describe(images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        return torch.cat(
            [module(torch.from_numpy(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        ).numpy()

    return describe
