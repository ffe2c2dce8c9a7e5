"""The real benchmarks, fetched from their official locations and read in their official formats.

- ``roxford5k`` / ``rparis6k`` (test sets): ``jpg/<name>.jpg`` images from the Oxford VGG archives and
  ``gnd_<name>.pkl`` (``imlist``, ``qimlist``, ``gnd`` with ``bbx``, ``easy``, ``hard``, ``junk``).
- ``r1m``: the revisitop 1M distractors, 100 ``revisitop1m.<k>.tar.gz`` archives added to the database.
- ``sfm120k`` (a training pool): ``ims/`` and the database pickle ``retrieval-SfM-120k.pkl``; cluster ids
  are labels, read only by the supervised baseline.

Every URL can be redirected to a mirror (``data.mirror``: the same paths under another host), which
is also how the tests serve these formats from 127.0.0.1.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from pipeline.data.download import download, extract_tar
from pipeline.data.images import ImageFiles
from pipeline.data.safe_pickle import load_pickle
from pipeline.errors import DatasetError

VGG = "https://www.robots.ox.ac.uk/~vgg/data"
REVISITOP = "http://cmp.felk.cvut.cz/revisitop/data/datasets"
R1M = "http://ptak.felk.cvut.cz/revisitop/revisitop1m/jpg"
CIRTORCH = "http://cmp.felk.cvut.cz/cnnimageretrieval/data"

REVISITED = {
    "roxford5k": [f"{VGG}/oxbuildings/oxbuild_images-v1.tgz"],
    "rparis6k": [f"{VGG}/parisbuildings/paris_1-v1.tgz", f"{VGG}/parisbuildings/paris_2-v1.tgz"],
}
SFM120K = {"images": f"{CIRTORCH}/train/ims/ims.tar.gz", "db": f"{CIRTORCH}/train/dbs/retrieval-SfM-120k.pkl"}


def gnd_url(name: str) -> str:
    return f"{REVISITOP}/{name}/gnd_{name}.pkl"


def r1m_url(k: int) -> str:
    return f"{R1M}/revisitop1m.{k}.tar.gz"


def mirrored(url: str, mirror: str) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (a base URL), path kept."""
    if not mirror:
        return url
    return mirror.rstrip("/") + urlsplit(url).path


def _fetch_archive(url: str, mirror: str, downloads: Path, into: Path, flatten: bool) -> None:
    """Download (resumably) and extract once; an ``.extracted`` marker beside the archive records it."""
    archive = download(mirrored(url, mirror), downloads / "archives" / Path(urlsplit(url).path).name)
    done = archive.with_name(archive.name + ".extracted")
    if done.exists() and into.exists():
        return
    staging = into.parent / f".extract-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    extract_tar(archive, staging)
    into.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    for p in files:  # the Paris archives nest images under paris/<landmark>/; the gnd names them flat
        target = into / (p.name if flatten else p.relative_to(staging))
        target.parent.mkdir(parents=True, exist_ok=True)
        p.replace(target)
    shutil.rmtree(staging, ignore_errors=True)
    done.touch()


def fetch_revisited(name: str, downloads: Path, mirror: str = "", distractors: int = 0) -> Path:
    """Images and ground truth of ``name`` (+ the first ``distractors`` R1M archives) under ``downloads/name``."""
    root = downloads / name
    for url in REVISITED[name]:
        _fetch_archive(url, mirror, downloads, root / "jpg", flatten=True)
    download(mirrored(gnd_url(name), mirror), root / f"gnd_{name}.pkl")
    for k in range(1, distractors + 1):
        _fetch_archive(r1m_url(k), mirror, downloads, downloads / "revisitop1m" / "jpg", flatten=False)
    return root


def fetch_sfm120k(downloads: Path, mirror: str = "") -> Path:
    root = downloads / "sfm120k"
    _fetch_archive(SFM120K["images"], mirror, downloads, root, flatten=False)
    download(mirrored(SFM120K["db"], mirror), root / "retrieval-SfM-120k.pkl")
    return root


@dataclass(frozen=True)
class RevisitedTest:
    queries: ImageFiles  # cropped to their ``bbx``
    database: ImageFiles
    gnd: list[dict]
    imlist: list[str]
    qimlist: list[str]


def find_gnd(folder: Path) -> Path:
    found = sorted(folder.glob("gnd*.pkl"))
    if len(found) != 1:
        raise DatasetError(
            f"{folder}: expected one revisited ground-truth file gnd_<name>.pkl "
            f"(dict with imlist, qimlist, gnd), found {len(found)}"
        )
    return found[0]


def load_revisited(folder: Path, distractors: Path | None = None, n_distractor_archives: int = 0) -> RevisitedTest:
    """A revisited-format test set: ``folder/gnd*.pkl`` and ``folder/jpg/<imlist name>.jpg``; R1M
    distractors (all images of the first archives, sorted) are appended to the database."""
    gnd_path = find_gnd(folder)
    gt = load_pickle(gnd_path)
    if not isinstance(gt, dict) or not {"imlist", "qimlist", "gnd"} <= set(gt):
        raise DatasetError(f"{gnd_path}: expected a dict with 'imlist', 'qimlist' and 'gnd' (revisited format)")
    imlist, qimlist, gnd = list(gt["imlist"]), list(gt["qimlist"]), list(gt["gnd"])
    if len(gnd) != len(qimlist):
        raise DatasetError(f"{gnd_path}: 'gnd' has {len(gnd)} entries for {len(qimlist)} queries")
    boxes = np.full((len(qimlist), 4), np.nan)
    for q, g in enumerate(gnd):
        if "bbx" in g and g["bbx"] is not None:
            boxes[q] = np.asarray(g["bbx"], dtype=float).ravel()[:4]
    db_paths = [f"jpg/{name}.jpg" for name in imlist]
    missing = [p for p in db_paths + [f"jpg/{n}.jpg" for n in qimlist] if not (folder / p).exists()]
    if missing:
        raise DatasetError(
            f"{folder}: {len(missing)} image(s) named in {gnd_path.name} are missing, e.g. "
            f"{missing[0]}; download the dataset again (delete {folder} and rerun `dvc repro`)"
        )
    if distractors is not None and n_distractor_archives:
        extra = sorted(str(p.relative_to(folder.parent)) for p in (distractors / "jpg").rglob("*.jpg"))
        db_paths = [str(Path(folder.name) / p) for p in db_paths] + extra
        q_paths = [str(Path(folder.name) / f"jpg/{n}.jpg") for n in qimlist]
        root = folder.parent
    else:
        q_paths = [f"jpg/{n}.jpg" for n in qimlist]
        root = folder
    return RevisitedTest(
        ImageFiles(root, tuple(q_paths), boxes), ImageFiles(root, tuple(db_paths)), gnd, imlist, qimlist
    )


def cid2filename(cid: str) -> str:
    """Where SfM-120k keeps image ``cid`` (cnnimageretrieval-pytorch's layout)."""
    return f"ims/{cid[-2:]}/{cid[-4:-2]}/{cid[-6:-4]}/{cid}"


def load_sfm120k(root: Path) -> tuple[ImageFiles, np.ndarray]:
    """The SfM-120k training images as a pool, with their 3D-model cluster ids as labels."""
    db_path = root / "retrieval-SfM-120k.pkl"
    db = load_pickle(db_path)
    try:
        train = db["train"]
        cids, clusters = list(train["cids"]), np.asarray(train["cluster"], dtype=np.int64)
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{db_path}: expected db['train'] with 'cids' and 'cluster' (SfM-120k format)") from exc
    if len(cids) != len(clusters):
        raise DatasetError(f"{db_path}: {len(cids)} cids but {len(clusters)} cluster ids")
    paths = tuple(cid2filename(c) for c in cids)
    missing = [p for p in paths if not (root / p).exists()]
    if missing:
        raise DatasetError(
            f"{root}: {len(missing)} SfM-120k image(s) missing, e.g. {missing[0]}; download "
            f"again (delete {root} and rerun `dvc repro`)"
        )
    _, labels = np.unique(clusters, return_inverse=True)
    return ImageFiles(root, paths), labels.astype(np.int64)
