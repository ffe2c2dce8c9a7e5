"""Fashion-MNIST: where its four IDX files come from and how they are verified.

Debian ships them (package ``dataset-fashion-mnist``); elsewhere they are downloaded from the
dataset's official site. The Debian copies are re-compressed, so files are verified by the SHA-256
of their *decompressed* content, which is the same from either source.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from pipeline.errors import DatasetError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# name -> (sha256 of the decompressed IDX content, its size in bytes)
FILES = {
    "train-images-idx3-ubyte.gz": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    "train-labels-idx1-ubyte.gz": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    "t10k-images-idx3-ubyte.gz": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    "t10k-labels-idx1-ubyte.gz": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
}

HOW_TO_GET = (
    "install Debian's package (apt-get install -y dataset-fashion-mnist) or let the fetch stage "
    f"download them from {MIRROR}"
)


def content_digest(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    try:
        with gzip.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                size += len(block)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable gzip file ({exc}); delete it and fetch again") from exc
    return h.hexdigest(), size


def verify(path: Path) -> None:
    want_sha, want_size = FILES[path.name]
    sha, size = content_digest(path)
    if (sha, size) != (want_sha, want_size):
        raise DatasetError(
            f"{path} has the wrong content (sha256 {sha[:12]}..., {size} bytes; expected "
            f"{want_sha[:12]}..., {want_size} bytes); delete it and fetch again"
        )


def fetch(dest: Path, source: Path | None = DEBIAN_DIR, download: bool = True) -> list[Path]:
    """Put the four verified files in ``dest``: copy from ``source`` if it has them, else download."""
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / ".partial"
    out = []
    for name in FILES:
        target = dest / name
        if not target.exists():
            # fetched into a side folder and verified there: the final name only ever holds a good file
            partial.mkdir(exist_ok=True)
            local = source / name if source is not None else None
            if local is not None and local.exists():
                shutil.copyfile(local, partial / name)
            elif download:
                from pipeline.data.download import download as fetch_url

                fetch_url(MIRROR + name, partial / name)  # resumable; content verified just below
            else:
                raise DatasetError(f"{target} is missing; {HOW_TO_GET}")
            verify(partial / name)
            os.replace(partial / name, target)
        else:
            verify(target)
        out.append(target)
    shutil.rmtree(partial, ignore_errors=True)
    return out


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped unsigned-byte IDX file (the MNIST family's format) into a numpy array."""
    if not path.exists():
        raise DatasetError(f"{path} is missing; {HOW_TO_GET}")
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim, dtype_code = magic & 0xFF, (magic >> 8) & 0xFF
    if magic >> 16 != 0 or dtype_code != 0x08 or len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x}); fetch it again")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}, file holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load(raw_dir: Path) -> dict[str, np.ndarray]:
    """The four arrays: train/test images (N, 28, 28) uint8 and labels (N,) int64."""
    arrays = {
        "train_images": read_idx(raw_dir / "train-images-idx3-ubyte.gz"),
        "train_labels": read_idx(raw_dir / "train-labels-idx1-ubyte.gz").astype(np.int64),
        "test_images": read_idx(raw_dir / "t10k-images-idx3-ubyte.gz"),
        "test_labels": read_idx(raw_dir / "t10k-labels-idx1-ubyte.gz").astype(np.int64),
    }
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DatasetError(f"{raw_dir}: {split} images and labels differ in count; fetch the files again")
    return arrays
