"""Reading the prepared dataset that the ``prepare`` stage writes, with errors that say what to do."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.images import ImageFiles
from pipeline.data.safe_pickle import load_pickle
from pipeline.errors import ArtifactError, DatasetError


def _need(path: Path) -> Path:
    if not path.exists():
        raise ArtifactError(f"{path} not found: run `dvc repro prepare` first")
    return path


def _files(z, key: str, prepared_dir: Path, boxes: str | None = None) -> ImageFiles:
    """A relative image root is relative to the prepared folder itself."""
    base = Path(str(z["root"]))
    return ImageFiles((prepared_dir / base).resolve(), tuple(str(p) for p in z[key]), z[boxes] if boxes else None)


def pool_images(root: Path) -> np.ndarray | ImageFiles:
    """Pool images only (the distillation stages never see the pool's labels): uint8 arrays, or the
    photo files of a photo dataset."""
    with np.load(_need(root / "pool.npz")) as z:
        return z["images"] if "images" in z else _files(z, "paths", root)


def pool_names(root: Path) -> list[str]:
    """Each pool image's name: its id (array datasets) or its listed path (files)."""
    with np.load(_need(root / "pool.npz")) as z:
        return [str(n) for n in (z["names"] if "names" in z else z["paths"])]


def pool_labels(root: Path) -> np.ndarray:
    with np.load(_need(root / "pool.npz")) as z:
        return z["labels"]


def meta(root: Path) -> dict:
    return json.loads(_need(root / "meta.json").read_text())


def pool_meta(root: Path) -> dict:
    """What the pool's users need (its size, classes), apart from the test split's counts: a new
    test split (``data.n_queries``, ``data.split_seed``) leaves it, and so every student, untouched."""
    return json.loads(_need(root / "pool.json").read_text())


@dataclass(frozen=True)
class TestSplit:
    query_images: np.ndarray | ImageFiles  # queries already cropped to their box (files: at decoding)
    db_images: np.ndarray | ImageFiles
    gnd: list[dict]
    query_names: list[str]
    db_names: list[str]


def load_test_split(root: Path) -> TestSplit:
    with np.load(_need(root / "test.npz")) as z:
        if "query_images" in z:
            q, db = z["query_images"], z["db_images"]
            names = [str(n) for n in z["query_names"]], [str(n) for n in z["db_names"]]
        else:
            q, db = _files(z, "query_paths", root, "query_boxes"), _files(z, "db_paths", root)
            names = list(q.paths), list(db.paths)
    gnd_path = _need(root / "gnd.pkl")
    gt = load_pickle(gnd_path)
    check_gnd(gt, len(q), len(db), gnd_path)
    return TestSplit(q, db, gt["gnd"], *names)


def check_gnd(gt, n_queries: int, n_db: int, path: Path) -> None:
    """Ground truth must be the revisited form: ``gnd`` a list, one dict per query, indices in range."""
    if not isinstance(gt, dict) or "gnd" not in gt or not isinstance(gt["gnd"], list):
        raise DatasetError(f"{path}: expected a dict with a 'gnd' list (revisited Oxford/Paris format)")
    if len(gt["gnd"]) != n_queries:
        raise DatasetError(f"{path}: 'gnd' has {len(gt['gnd'])} entries for {n_queries} queries")
    for q, g in enumerate(gt["gnd"]):
        if not isinstance(g, dict) or not {"easy", "hard", "junk"} <= set(g):
            raise DatasetError(f"{path}: gnd[{q}] must be a dict with 'easy', 'hard' and 'junk' index lists")
        for key in ("easy", "hard", "junk"):
            idx = np.asarray(g[key]).ravel()
            if idx.size and (idx.min() < 0 or idx.max() >= n_db):
                raise DatasetError(f"{path}: gnd[{q}]['{key}'] has indices outside the {n_db}-image database")
