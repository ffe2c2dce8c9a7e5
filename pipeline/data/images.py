"""Images that live in files (the real benchmarks, SfM-120k, a user's folder) rather than in arrays.

The small default data is held as uint8 arrays; real benchmarks are photos of every size, so the
prepared dataset lists their paths instead and each consumer decodes what it needs: the teacher at
its own resolution (``ImageFiles[idx]``, PIL images), the student at a fixed square size
(``student_arrays``). A query's box (revisited ``bbx``) is applied at decoding, so every model sees
the same crop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DatasetError

DECODE_WORKERS = max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class ImageFiles:
    root: Path
    paths: tuple[str, ...]  # relative to root
    boxes: np.ndarray | None = None  # (N, 4) x1, y1, x2, y2 crop boxes (NaN row: whole image)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int):
        """RGB PIL image ``i``, cropped to its box."""
        from PIL import Image

        path = self.root / self.paths[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise DatasetError(
                f"{path}: cannot read this image ({exc}); download it again (delete it and rerun `dvc repro`)"
            ) from exc
        if self.boxes is not None and not np.isnan(self.boxes[i]).any():
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            im = im.crop((int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))))
        return im

    def head(self, n: int) -> "ImageFiles":
        """The first ``n`` images."""
        return self.take(np.arange(min(n, len(self))))

    def take(self, idx) -> "ImageFiles":
        """The images at ``idx``, in that order (nothing is decoded)."""
        idx = np.asarray(idx, dtype=np.int64)
        return ImageFiles(self.root, tuple(self.paths[i] for i in idx), None if self.boxes is None else self.boxes[idx])

    def __getitem__(self, idx) -> list:
        return [self.load(int(i)) for i in np.atleast_1d(np.asarray(idx))]

    def __add__(self, other: "ImageFiles") -> "ImageFiles":
        """Queries followed by the database, as one source (same root required)."""
        if other.root != self.root:
            raise ValueError("can only join image lists under the same root")
        boxes = None
        if self.boxes is not None or other.boxes is not None:
            boxes = np.concatenate([_boxes_or_nan(self), _boxes_or_nan(other)])
        return ImageFiles(self.root, self.paths + other.paths, boxes)

    def map(self, fn, idx) -> list:
        """``fn(load(i))`` for each ``i`` of ``idx``, in order, decoded by a pool of threads (Pillow
        decodes without holding the GIL): the model is not left waiting on one core's JPEG decoding."""
        from concurrent.futures import ThreadPoolExecutor

        idx = [int(i) for i in np.atleast_1d(np.asarray(idx))]
        if len(idx) < 8:
            return [fn(self.load(i)) for i in idx]
        with ThreadPoolExecutor(max_workers=min(DECODE_WORKERS, len(idx))) as pool:
            return list(pool.map(lambda i: fn(self.load(i)), idx))

    def digests(self) -> np.ndarray:
        """A content hash per file (128 bits of its sha256, hex): stored beside the paths, so that a
        photo edited in place changes the prepared files' hash and DVC reruns what depends on it."""
        import hashlib
        from concurrent.futures import ThreadPoolExecutor

        def digest(path: str) -> str:
            h = hashlib.sha256()
            with open(self.root / path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            return h.hexdigest()[:32]

        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
            return np.array(list(pool.map(digest, self.paths)), dtype="S32")

    def to_arrays(self, size: int, idx=None) -> np.ndarray:
        """uint8 (n, size, size, 3): each image (cropped) resized to a square; only the small squares
        are kept, so a large subset never holds full-resolution photos in memory."""
        from PIL import Image

        idx = np.arange(len(self)) if idx is None else np.atleast_1d(np.asarray(idx))
        out = np.empty((len(idx), size, size, 3), dtype=np.uint8)
        for k, square in enumerate(self.map(lambda im: np.asarray(im.resize((size, size), Image.BILINEAR)), idx)):
            out[k] = square
        return out


def _boxes_or_nan(files: ImageFiles) -> np.ndarray:
    return files.boxes if files.boxes is not None else np.full((len(files), 4), np.nan)


def student_arrays(images, size: int, idx=None) -> np.ndarray:
    """What a student trains and is evaluated on: the arrays themselves (default data), or files
    decoded to ``size`` squares."""
    if isinstance(images, ImageFiles):
        return images.to_arrays(size, idx)
    return images if idx is None else images[idx]


def array_chunks(images, size: int, chunk: int = 1024):
    """``student_arrays`` of consecutive slices: a large file database is never decoded all at once."""
    for start in range(0, len(images), chunk):
        yield student_arrays(images, size, np.arange(start, min(start + chunk, len(images))))
