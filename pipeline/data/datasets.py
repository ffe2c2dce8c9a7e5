"""The datasets the ``prepare`` stage can turn into a pool and a retrieval test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data import fashion_mnist
from pipeline.data.folder import load_folder
from pipeline.params import DataParams


def load_dataset(dp: DataParams) -> tuple[dict[str, np.ndarray], list[dict]]:
    """``train_*`` (the pool) and ``test_*`` arrays with each image's name (what precomputed
    descriptors are looked up by), and the images skipped as unreadable. ``data.pool_limit`` and
    ``data.test_limit`` keep the first images of each (quick trials)."""
    raw = Path(dp.raw_dir)
    if dp.dataset == "fashion-mnist":
        arrays = fashion_mnist.load(raw)
        for split, prefix in (("train", "train"), ("test", "t10k")):
            arrays[f"{split}_names"] = np.array([f"{prefix}-{i:05d}" for i in range(len(arrays[f"{split}_images"]))])
        skipped: list[dict] = []
    else:
        data = load_folder(raw, dp.image_size, dp.on_bad_image)
        order = np.random.default_rng(dp.split_seed).permutation(len(data.images))
        n_test = max(2, int(round(dp.test_fraction * len(order))))
        test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
        names = np.array(data.paths)
        arrays = {
            "train_images": data.images[train],
            "train_labels": data.labels[train],
            "train_names": names[train],
            "test_images": data.images[test],
            "test_labels": data.labels[test],
            "test_names": names[test],
        }
        skipped = data.skipped
    for split, limit in (("train", dp.pool_limit), ("test", dp.test_limit)):
        if limit:
            for key in ("images", "labels", "names"):
                arrays[f"{split}_{key}"] = arrays[f"{split}_{key}"][:limit]
    return arrays, skipped
