"""Reading the prepared dataset that the ``prepare`` stage writes, with errors that say what to do."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.images import ImageFiles
from pipeline.data.safe_pickle import load_pickle


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro prepare` first")
    return path


def _files(z, key: str, prepared_dir: Path, boxes: str | None = None) -> ImageFiles:
    """A relative image root is relative to the repository (``prepared_dir`` is <repo>/data/prepared)."""
    base = Path(str(z["root"]))
    base = base if base.is_absolute() else prepared_dir.resolve().parents[1] / base
    return ImageFiles(base, tuple(str(p) for p in z[key]), z[boxes] if boxes else None)


def pool_images(root: Path) -> np.ndarray | ImageFiles:
    """Pool images only (the distillation stages never see the pool's labels): uint8 arrays, or the
    photo files of a photo dataset."""
    with np.load(_need(root / "pool.npz")) as z:
        return z["images"] if "images" in z else _files(z, "paths", root)


def pool_labels(root: Path) -> np.ndarray:
    with np.load(_need(root / "pool.npz")) as z:
        return z["labels"]


def meta(root: Path) -> dict:
    return json.loads(_need(root / "meta.json").read_text())


@dataclass(frozen=True)
class TestSplit:
    query_images: np.ndarray | ImageFiles   # queries already cropped to their box (files: at decoding)
    db_images: np.ndarray | ImageFiles
    gnd: list[dict]


def load_test_split(root: Path) -> TestSplit:
    with np.load(_need(root / "test.npz")) as z:
        if "query_images" in z:
            q, db = z["query_images"], z["db_images"]
        else:
            q, db = _files(z, "query_paths", root, "query_boxes"), _files(z, "db_paths", root)
    gnd_path = _need(root / "gnd.pkl")
    gt = load_pickle(gnd_path)
    check_gnd(gt, len(q), len(db), gnd_path)
    return TestSplit(q, db, gt["gnd"])


def check_gnd(gt, n_queries: int, n_db: int, path: Path) -> None:
    """Ground truth must be the revisited form: ``gnd`` a list, one dict per query, indices in range."""
    if not isinstance(gt, dict) or "gnd" not in gt or not isinstance(gt["gnd"], list):
        raise ValueError(f"{path}: expected a dict with a 'gnd' list (revisited Oxford/Paris format)")
    if len(gt["gnd"]) != n_queries:
        raise ValueError(f"{path}: 'gnd' has {len(gt['gnd'])} entries for {n_queries} queries")
    for q, g in enumerate(gt["gnd"]):
        if not isinstance(g, dict) or not {"easy", "hard", "junk"} <= set(g):
            raise ValueError(f"{path}: gnd[{q}] must be a dict with 'easy', 'hard' and 'junk' index lists")
        for key in ("easy", "hard", "junk"):
            idx = np.asarray(g[key]).ravel()
            if idx.size and (idx.min() < 0 or idx.max() >= n_db):
                raise ValueError(f"{path}: gnd[{q}]['{key}'] has indices outside the {n_db}-image database")
