"""What a teacher is asked, as the exact pixels it receives, and the key an answer is stored under.

An answer is keyed by a hash of those pixels (a query's crop applied, shape and type included), so
any change of split, order, pool or test set either finds the answer of the very same input or
asks anew: no stored answer can ever be returned for another image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.data.images import ImageFiles


def pixels_key(pixels: np.ndarray) -> bytes:
    """SHA-256 (hex, ASCII) of a uint8 image array with its shape: the bytes a teacher receives."""
    a = np.ascontiguousarray(pixels)
    if a.dtype != np.uint8:
        raise TypeError(f"teacher inputs are uint8 images, got {a.dtype}")
    h = hashlib.sha256(f"uint8{a.shape}".encode())
    h.update(a.data)
    return h.hexdigest().encode()


class TeacherInputs:
    """The images of one request as the teacher receives them: rows of a uint8 array (the small
    default data) or photo files (decoded, cropped to their box, RGB), with their names."""

    def __init__(self, images: np.ndarray | ImageFiles, names: Sequence[str]):
        if len(images) != len(names):
            raise ValueError(f"{len(images)} images but {len(names)} names")
        self.images, self.names = images, list(names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def same_size(self) -> bool:
        """Arrays share one shape and go many to a call; photos differ and go one per call."""
        return isinstance(self.images, np.ndarray)

    def keys(self) -> list[bytes]:
        if isinstance(self.images, np.ndarray):
            return [pixels_key(self.images[i]) for i in range(len(self))]
        return self.images.map(lambda im: pixels_key(np.asarray(im, dtype=np.uint8)), range(len(self)))

    def batch(self, idx: Sequence[int]) -> np.ndarray | list[np.ndarray]:
        """The pixels of ``idx``: one array for same-size images, else a list of arrays (decoded in
        parallel)."""
        if isinstance(self.images, np.ndarray):
            return self.images[np.asarray(idx, dtype=np.int64)]
        return self.images.map(lambda im: np.asarray(im, dtype=np.uint8), idx)


def pool_inputs(prepared: Path, subset: np.ndarray) -> "TeacherInputs":
    """The subset's images as the teacher receives them, with their names."""
    from pipeline.data import prepared as prepared_data

    pool, names = prepared_data.pool_images(prepared), prepared_data.pool_names(prepared)
    images = pool[subset] if isinstance(pool, np.ndarray) else pool.take(subset)
    return TeacherInputs(images, [names[i] for i in subset])
