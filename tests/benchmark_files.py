"""Tiny files in the exact official formats of the real benchmarks, served by tests from 127.0.0.1.

- roxford5k: ``oxbuild_images-v1.tgz`` (flat jpgs) + ``gnd_roxford5k.pkl``;
- rparis6k: ``paris_1-v1.tgz`` / ``paris_2-v1.tgz`` (``paris/<landmark>/<name>.jpg``) + its gnd;
- R1M: ``revisitop1m.<k>.tar.gz`` archives of jpgs in sub-folders;
- SfM-120k: ``ims.tar.gz`` (``ims/<cid[-2:]>/<cid[-4:-2]>/<cid[-6:-4]>/<cid>``) + ``retrieval-SfM-120k.pkl``;
- a cnnimageretrieval checkpoint ``{'meta', 'state_dict'}`` (ResNet-18 layout, random weights).
Images are 4 "landmarks" told apart by colour and stripe direction, so retrieval has a real answer.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from pipeline.data import benchmarks


def photo(landmark: int, k: int, size=(48, 40)) -> bytes:
    rng = np.random.default_rng(1000 * landmark + k)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    angle = landmark * np.pi / 4
    stripes = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) / 2.5)
    colour = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60]][landmark % 4])
    img = colour * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 20, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A gzipped tar of ``members`` (name -> bytes) and symbolic ``links`` (name -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def revisited(name: str, per_landmark: int = 6) -> tuple[dict[str, bytes], dict]:
    """Archives + gnd of a tiny ``name`` (roxford5k or rparis6k). The first image of each landmark is
    also its query; its box crops the left 3/4. Easy: the next 3 images; hard: the rest but one; junk: the last."""
    images = {f"{name[1:4]}_{lm}_{k:06d}": photo(lm, k) for lm in range(4) for k in range(per_landmark)}
    imlist = sorted(images)
    qimlist, gnd = [], []
    for lm in range(4):
        same = [i for i, n in enumerate(imlist) if n.startswith(f"{name[1:4]}_{lm}_")]
        qimlist.append(imlist[same[0]])
        gnd.append(
            {
                "bbx": [0.0, 0.0, 36.0, 40.0],
                "easy": np.array(same[1:4]),
                "hard": np.array(same[4:-1]),
                "junk": np.array(same[-1:]),
            }
        )
    gt = {"imlist": imlist, "qimlist": qimlist, "gnd": gnd}
    urls = benchmarks.REVISITED[name]
    if name == "roxford5k":
        archives = {urls[0]: tar_gz({f"{n}.jpg": images[n] for n in imlist})}
    else:  # Paris nests images under paris/<landmark>/ and splits them over two archives
        half = len(imlist) // 2
        archives = {
            urls[0]: tar_gz({f"paris/lm{n[-8]}/{n}.jpg": images[n] for n in imlist[:half]}),
            urls[1]: tar_gz({f"paris/lm{n[-8]}/{n}.jpg": images[n] for n in imlist[half:]}),
        }
    files = {urlsplit(u).path: data for u, data in archives.items()}
    files[urlsplit(benchmarks.gnd_url(name)).path] = pickle.dumps(gt, protocol=2)
    return files, gt


def r1m(archives: int = 2, per_archive: int = 5) -> dict[str, bytes]:
    return {
        urlsplit(benchmarks.r1m_url(k)).path: tar_gz(
            {f"{k}/{i:03d}/r1m_{k}_{i:03d}.jpg": photo(4 + i % 3, 100 * k + i) for i in range(per_archive)}
        )
        for k in range(1, archives + 1)
    }


def sfm120k(clusters: int = 4, per_cluster: int = 12) -> tuple[dict[str, bytes], dict]:
    cids, cluster, members = [], [], {}
    for c in range(clusters):
        for k in range(per_cluster):
            cid = f"{c:02d}{k:02d}{c * 7 + k:04d}abcdef{c:02d}{k:02d}"
            cids.append(cid)
            cluster.append(c * 10)  # cluster ids are not 0..n-1 in the real file
            members[benchmarks.cid2filename(cid)] = photo(c, 50 + k, size=(44, 36))
    db = {
        "train": {"cids": cids, "cluster": cluster, "qidxs": [0], "pidxs": [1], "bbxs": [None] * len(cids)},
        "val": {"cids": [], "cluster": [], "qidxs": [], "pidxs": [], "bbxs": []},
    }
    files = {
        urlsplit(benchmarks.SFM120K["images"]).path: tar_gz(members),
        urlsplit(benchmarks.SFM120K["db"]).path: pickle.dumps(db, protocol=2),
    }
    return files, db


CIRTORCH_WEIGHTS = "/cnnimageretrieval/data/networks/retrieval-SfM-120k/rSfM120k-tl-resnet18-gem-w-test.pth"


def cirtorch_checkpoint(arch: str = "resnet18", seed: int = 0) -> bytes:
    """A checkpoint laid out as cnnimageretrieval-pytorch saves one: ``features.*`` (the ResNet minus
    avgpool and fc), ``pool.p`` of shape [1], ``whiten.*``, and ``meta``."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.get_model(arch, weights=None)
    features = torch.nn.Sequential(*list(net.children())[:-2])
    dim = 512
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["pool.p"] = torch.ones(1) * 3.0
    whiten = torch.nn.Linear(dim, dim)
    state["whiten.weight"], state["whiten.bias"] = whiten.weight.detach(), whiten.bias.detach()
    meta = {
        "architecture": arch,
        "local_whitening": False,
        "pooling": "gem",
        "regional": False,
        "whitening": True,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "outputdim": dim,
    }
    buf = io.BytesIO()
    torch.save({"meta": meta, "state_dict": state, "epoch": 1}, buf)
    return buf.getvalue()
