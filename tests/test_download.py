"""Downloads from a local HTTP server on 127.0.0.1: resume after a cut, checksums, safe extraction."""

import hashlib
import os

import numpy as np
import pytest

from pipeline.data.download import HAS_DATA_FILTER, download, extract_tar
from pipeline.errors import DatasetError
from tests.benchmark_files import tar_gz
from tests.http_server import Server

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def test_download_resumes_after_cut_connections(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    server.cuts, server.cut_at = 2, 300_000
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    out = download(server.url + "/big.bin", tmp_path / "big.bin", size=len(PAYLOAD), sha256=sha, backoff=0)
    assert out.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=300000-", "bytes=600000-"]  # each attempt continued the last
    assert not (tmp_path / "big.bin.part").exists()


def test_interrupted_download_continues_in_a_new_run(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    server.cuts, server.cut_at = 10, 100_000
    with pytest.raises(DatasetError, match="run again to resume from 200000 bytes"):
        download(server.url + "/big.bin", tmp_path / "big.bin", retries=1, backoff=0)
    assert not (tmp_path / "big.bin").exists() and (tmp_path / "big.bin.part").stat().st_size == 200_000
    server.cuts = 0
    download(server.url + "/big.bin", tmp_path / "big.bin", size=len(PAYLOAD))
    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD and server.ranges[-1] == "bytes=200000-"


def test_checksum_failure_is_refused(server, tmp_path):
    server.files["/f.bin"] = b"tampered content"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download(server.url + "/f.bin", tmp_path / "f.bin", sha256=hashlib.sha256(b"original").hexdigest())
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()
    with pytest.raises(DatasetError, match="HTTP 404"):
        download(server.url + "/missing.bin", tmp_path / "m.bin")


def test_weights_that_fail_to_download_are_a_weights_error_not_a_dataset_one(server, tmp_path):
    from pipeline.errors import WeightsError
    from pipeline.models.weights import weights_file

    server.files["/w.pth"] = b"tampered weights"
    for url, message in [(server.url + "/w.pth", "checksum mismatch"), (server.url + "/gone.pth", "HTTP 404")]:
        with pytest.raises(WeightsError, match=message) as info:
            weights_file(url, tmp_path, hashlib.sha256(b"original").hexdigest())
        assert not isinstance(info.value, DatasetError) and url in str(info.value)
    assert not list((tmp_path / "weights").glob("w.pth*"))  # the refused file is not kept


# tarfile's data filter where this Python has it (3.11.4+), and the equivalent for older ones everywhere
@pytest.mark.parametrize("data_filter", [True, False] if HAS_DATA_FILTER else [False])
def test_safe_extraction(tmp_path, monkeypatch, data_filter):
    import pipeline.data.download as download_module

    monkeypatch.setattr(download_module, "HAS_DATA_FILTER", data_filter)
    good = tmp_path / "good.tgz"
    good.write_bytes(tar_gz({"jpg/a.jpg": b"x", "jpg/b.jpg": b"y"}))
    assert sorted(extract_tar(good, tmp_path / "out")) == ["jpg/a.jpg", "jpg/b.jpg"]
    assert (tmp_path / "out/jpg/a.jpg").read_bytes() == b"x"
    for i, (members, links) in enumerate(
        [
            ({"../evil.txt": b"!"}, None),
            ({"jpg/../../evil.txt": b"!"}, None),
            ({}, {"jpg/link": "/etc/passwd"}),
            ({}, {"jpg/up": "../../.."}),
        ]
    ):
        bad = tmp_path / f"bad{i}.tgz"
        bad.write_bytes(tar_gz(members, links))
        with pytest.raises(DatasetError, match="refused to extract.*outside"):
            extract_tar(bad, tmp_path / f"out{i}")
    assert not (tmp_path / "evil.txt").exists()
    absolute = tmp_path / "abs.tgz"  # an absolute member name is made relative: it lands inside
    absolute.write_bytes(tar_gz({"/abs/evil.txt": b"!"}))
    extract_tar(absolute, tmp_path / "out_abs")
    assert (tmp_path / "out_abs/abs/evil.txt").exists()


def _tar(entries) -> bytes:
    """An archive of (name, type, linkname, mode, data) entries, in order."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, linkname, mode, data in entries:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.size = kind, linkname, mode, len(data)
            info.uid = 1234
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def test_without_the_data_filter_links_chains_and_special_files_are_refused(tmp_path, monkeypatch):
    """The hand-written checks for Pythons before 3.11.4: what the data filter refuses is refused too
    (links created earlier in the same archive included), and modes and owners are made safe."""
    import stat
    import tarfile

    import pipeline.data.download as download_module

    monkeypatch.setattr(download_module, "HAS_DATA_FILTER", False)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep")
    cases = {
        "chained links": [
            ("l2", tarfile.SYMTYPE, ".", 0o777, b""),
            ("l1", tarfile.SYMTYPE, "l2/..", 0o777, b""),
            ("l1/evil", tarfile.REGTYPE, "", 0o644, b"!"),
        ],
        "absolute hard link": [
            ("h", tarfile.LNKTYPE, str(outside), 0o644, b""),
            ("h", tarfile.REGTYPE, "", 0o644, b"overwritten"),
        ],
        "device": [("dev", tarfile.CHRTYPE, "", 0o644, b"")],
    }
    for i, (case, entries) in enumerate(cases.items()):
        archive = tmp_path / f"bad{i}.tgz"
        archive.write_bytes(_tar(entries))
        with pytest.raises(DatasetError, match="refused to extract"):
            extract_tar(archive, tmp_path / f"sub{i}" / "out")
        assert outside.read_bytes() == b"keep" and not (tmp_path / f"sub{i}" / "evil").exists(), case
    archive = tmp_path / "modes.tgz"
    archive.write_bytes(
        _tar(
            [
                ("d", tarfile.DIRTYPE, "", 0o555, b""),
                ("d/run.sh", tarfile.REGTYPE, "", 0o6777, b"x"),
                ("d/a.jpg", tarfile.REGTYPE, "", 0o666, b"y"),
                ("d/w.jpg", tarfile.REGTYPE, "", 0o200, b"z"),
            ]
        )
    )
    extract_tar(archive, tmp_path / "modes")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "modes/d", *(tmp_path / "modes/d").iterdir()]}
    assert modes == {"d": 0o755, "run.sh": 0o755, "a.jpg": 0o644, "w.jpg": 0o600}
    assert (tmp_path / "modes/d/a.jpg").stat().st_uid == os.getuid()


def test_fashion_mnist_download_path_verifies_content(server, tmp_path, monkeypatch):
    """Without Debian's package the fetch stage downloads the four files; bad content is refused."""
    import gzip
    import hashlib

    from pipeline.data import fashion_mnist

    # the four files in the IDX layout (small, so that the test needs no copy of the real ones), with
    # the checksums of their content in place of the real files' checksums
    rng = np.random.default_rng(0)
    checksums = {}
    for name in fashion_mnist.FILES:
        n = 3000 if name.startswith("train") else 500
        shape = (n, 28, 28) if "images" in name else (n,)
        header = (0x0800 + len(shape)).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
        content = header + rng.integers(0, 256 if "images" in name else 10, shape, dtype=np.uint8).tobytes()
        checksums[name] = (hashlib.sha256(content).hexdigest(), len(content))
        server.files[f"/{name}"] = gzip.compress(content)
    monkeypatch.setattr(fashion_mnist, "FILES", checksums)
    monkeypatch.setattr(fashion_mnist, "MIRROR", server.url + "/")
    server.cuts, server.cut_at = 1, 100_000  # the first file's connection is cut once
    paths = fashion_mnist.fetch(tmp_path / "raw", source=None)
    assert [p.name for p in paths] == list(fashion_mnist.FILES)
    assert server.ranges[:2] == [None, "bytes=100000-"]  # the cut one was resumed, not restarted
    assert fashion_mnist.load(tmp_path / "raw")["train_images"].shape == (3000, 28, 28)
    assert not (tmp_path / "raw/.partial").exists()
    server.files["/t10k-labels-idx1-ubyte.gz"] = server.files["/train-labels-idx1-ubyte.gz"]  # wrong file
    with pytest.raises(DatasetError, match="wrong content"):
        fashion_mnist.fetch(tmp_path / "raw2", source=None)
    assert not (tmp_path / "raw2/t10k-labels-idx1-ubyte.gz").exists()
