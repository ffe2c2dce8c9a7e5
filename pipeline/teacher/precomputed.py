"""Descriptors the user already has (``teacher.kind: precomputed``): looked up by image name, no
query made, nothing counted.

The file is an ``.npz`` with ``names`` (one per row: an image's id for array datasets, e.g.
``train-00042`` / ``t10k-00007``, or its path as listed in ``data/prepared`` for files) and
``descriptors`` (float, one L2-normalised row per name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import TeacherError
from pipeline.io import file_sha256
from pipeline.teacher.inputs import TeacherInputs


class PrecomputedDescriptors:
    def __init__(self, path: Path, dim: int):
        self.path = Path(path)
        if not self.path.is_file():
            raise TeacherError(
                f"{self.path} not found: teacher.descriptors must name an .npz file with 'names' and 'descriptors'"
            )
        try:
            with np.load(self.path, allow_pickle=False) as z:
                names, desc = [str(n) for n in z["names"]], z["descriptors"].astype(np.float32)
        except (KeyError, ValueError, OSError) as exc:
            raise TeacherError(f"{self.path}: expected an .npz with arrays 'names' and 'descriptors' ({exc})") from None
        if desc.ndim != 2 or len(desc) != len(names):
            raise TeacherError(
                f"{self.path}: 'descriptors' must have one row per name ({len(names)} names, "
                f"descriptors of shape {desc.shape})"
            )
        if desc.shape[1] != dim:
            raise TeacherError(
                f"{self.path}: descriptors are {desc.shape[1]}-d but teacher.dim is {dim}; "
                f"set teacher.dim: {desc.shape[1]}"
            )
        norms = np.linalg.norm(desc, axis=1)
        if not np.isfinite(desc).all() or np.abs(norms - 1).max() > 1e-3:
            raise TeacherError(
                f"{self.path}: descriptors must be finite and L2-normalised (norms "
                f"{norms.min():.4g} to {norms.max():.4g})"
            )
        self.rows = {n: k for k, n in enumerate(names)}
        self.descriptors = desc
        self.sha256 = file_sha256(self.path)

    def describe(self, inputs: TeacherInputs) -> np.ndarray:
        missing = [n for n in inputs.names if n not in self.rows]
        if missing:
            raise TeacherError(
                f"{self.path} has no descriptor for {len(missing)} of the {len(inputs)} images asked "
                f"for, e.g. {', '.join(missing[:3])}; it needs one per image, named as in "
                "data/prepared (array datasets: train-NNNNN / t10k-NNNNN; files: their listed paths)"
            )
        return self.descriptors[[self.rows[n] for n in inputs.names]]
