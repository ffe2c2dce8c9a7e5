"""A user's own images: a folder plus a CSV of ``path,label`` (or ``path,group``) rows.

Images are read with Pillow, converted to greyscale and resized to a square, so that they feed the
same networks as the default data. A corrupt or truncated image either stops the run (naming the
file) or is skipped and recorded, as ``data.on_bad_image`` says.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DatasetError

CSV_NAME = "labels.csv"


@dataclass(frozen=True)
class FolderData:
    images: np.ndarray  # (N, size, size) uint8
    labels: np.ndarray  # (N,) int64 ids of the label or group column
    paths: list[str]  # relative paths of the images kept
    skipped: list[dict]  # {"path", "error"} for each image skipped


def read_rows(root: Path) -> list[tuple[str, str]]:
    path = root / CSV_NAME
    if not path.exists():
        raise DatasetError(
            f"{path} not found: a folder dataset needs {CSV_NAME} with a header 'path,label' "
            f"(or 'path,group') and one row per image, paths relative to {root}"
        )
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        key = "label" if "label" in cols else "group" if "group" in cols else None
        if "path" not in cols or key is None:
            raise DatasetError(f"{path}: header must be 'path,label' or 'path,group', got {','.join(cols)}")
        rows = [(r["path"], r[key]) for r in reader]
    if not rows:
        raise DatasetError(f"{path} lists no images")
    return rows


def load_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decode fully now: a truncated file fails here, not later
        return np.asarray(im.convert("L").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _scan(root: Path, on_bad_image: str, read) -> tuple[list[tuple[str, str, object]], list[dict]]:
    """``(path, label, read(file))`` of each readable row; an unreadable image stops the run (naming
    the file) or is skipped and recorded, as ``on_bad_image`` says."""
    kept, skipped = [], []
    for rel, label in read_rows(root):
        path = root / rel
        if not path.resolve().is_relative_to(root.resolve()):
            raise DatasetError(f"{root / CSV_NAME}: {rel!r} points outside the dataset folder")
        try:
            value = read(path)
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for unreadable images
            if on_bad_image == "stop":
                raise DatasetError(
                    f"{path}: cannot read this image ({exc}). Replace or remove it, or set "
                    f"data.on_bad_image: skip in params.yaml to skip and record it"
                ) from exc
            skipped.append({"path": rel, "error": str(exc)})
            continue
        kept.append((rel, label, value))
    if not kept:
        raise DatasetError(f"{root}: no readable image")
    return kept, skipped


def _label_ids(labels: list[str]) -> np.ndarray:
    names = sorted(set(labels))
    return np.array([names.index(x) for x in labels], dtype=np.int64)


def load_folder(root: Path, size: int, on_bad_image: str) -> FolderData:
    kept, skipped = _scan(root, on_bad_image, lambda path: load_image(path, size))
    paths, labels, images = zip(*kept)
    return FolderData(np.stack(images), _label_ids(list(labels)), list(paths), skipped)


def _verify(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()


def load_folder_files(root: Path, on_bad_image: str):
    """The folder as photo files (colour, full size) for a photo test set: each image's header is
    checked now; unreadable ones stop the run or are skipped, as with arrays."""
    from pipeline.data.images import ImageFiles

    kept, skipped = _scan(root, on_bad_image, _verify)
    paths, labels, _ = zip(*kept)
    return ImageFiles(root, tuple(paths)), _label_ids(list(labels)), skipped
