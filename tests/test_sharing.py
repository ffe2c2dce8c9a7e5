"""Results shared the DVC way: a finished run pushed to a DVC remote (a local folder here) and pulled
by a teammate's clone, which then has every output, up to date, without recomputing anything; its
plots page works offline."""

import shutil

import pytest

from tests.pipeline_copy import clone, dvc

pytestmark = pytest.mark.e2e


def test_a_teammate_pulls_a_finished_run_instead_of_recomputing_it(finished_repo, tmp_path):
    repo = clone(finished_repo, tmp_path / "mine")
    dvc(repo, "remote", "add", "-d", "-f", "shared", str(tmp_path / "remote"))
    dvc(repo, "push")
    mate = tmp_path / "teammate" / "repo"  # what git gives a teammate: code, params, dvc.yaml, dvc.lock
    mate.mkdir(parents=True)
    for name in ("pipeline", "stages", ".dvc"):
        shutil.copytree(repo / name, mate / name, ignore=shutil.ignore_patterns("cache", "tmp", "__pycache__"))
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(repo / name, mate / name)
    assert not (mate / "reports").exists()
    dvc(mate, "pull")
    assert "Data and pipelines are up to date" in dvc(mate, "status").stdout
    for path in ("reports/summary.md", "metrics/teacher.json", "reports/gallery/teacher.png"):
        assert (mate / path).read_bytes() == (repo / path).read_bytes(), path
    assert "map" in dvc(mate, "metrics", "show").stdout
    dvc(mate, "plots", "show", "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots" / "index.html").read_text()
    assert page.count("<img") >= 3 and "<script" not in page  # pictures only: no JavaScript from the internet
