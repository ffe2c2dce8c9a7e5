"""The datasets the ``prepare`` stage can turn into a pool and a retrieval test split."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data import fashion_mnist
from pipeline.data.folder import load_folder
from pipeline.params import DataParams


def load_dataset(dp: DataParams, root: Path) -> tuple[dict[str, np.ndarray], list[dict]]:
    """``train_*`` (the pool) and ``test_*`` arrays, and the images skipped as unreadable."""
    raw = root / dp.raw_dir
    if dp.dataset == "fashion-mnist":
        return fashion_mnist.load(raw), []
    data = load_folder(raw, dp.image_size, dp.on_bad_image)
    order = np.random.default_rng(dp.split_seed).permutation(len(data.images))
    n_test = max(2, int(round(dp.test_fraction * len(order))))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    arrays = {"train_images": data.images[train], "train_labels": data.labels[train],
              "test_images": data.images[test], "test_labels": data.labels[test]}
    return arrays, data.skipped
