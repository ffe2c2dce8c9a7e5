"""One grid: the students dvc.yaml's matrices train (and the evaluate stage's outputs) are exactly
the cells of pipeline/grid.py, which the report, the evaluation and the MLflow records read."""

import pytest

from pipeline.grid import grid, run_name
from pipeline.params import load_params
from tests.pipeline_copy import TINY, copy_repo, repo_params


@pytest.mark.parametrize("override", [{}, TINY], ids=["defaults", "tiny"])
def test_dvc_yaml_trains_exactly_the_cells_of_the_grid(tmp_path, override):
    from dvc.repo import Repo

    repo = copy_repo(tmp_path / "repo", override)
    with Repo(str(repo)) as dvc_repo:
        trained = sorted(
            str(out.def_path)
            for stage in dvc_repo.index.stages
            for out in stage.outs
            if str(out.def_path).startswith("models/students/")
        )
    params = load_params(repo / "params.yaml")
    assert trained == sorted(f"models/students/{run_name(*cell)}.pt" for cell in grid(params).every)


def test_the_grid_names_every_cell_once():
    cells = grid(repo_params()).every
    assert len({run_name(*c) for c in cells}) == len(cells)


def test_track_finds_a_missing_output_before_any_mlflow_work(tmp_path):
    """RunFiles.check names the first missing file the records would read: every cell's metrics and
    checkpoint, the teacher's files, the report's."""
    from pipeline.errors import ArtifactError
    from pipeline.run_records import REPORT_FILES, RunFiles

    params = repo_params(TINY)
    files = RunFiles(
        *(tmp_path / n for n in ("students", "models", "teacher", "t.json", "tt.json", "q.json", "e.json", "reports"))
    )
    for folder in (files.students, files.models, files.teacher, files.reports):
        folder.mkdir()
    for path in (
        files.teacher / "card.json",
        files.teacher_metrics,
        files.teacher_training,
        files.queries,
        files.efficiency,
        *(files.reports / n for n in REPORT_FILES),
    ):
        path.write_text("{}")
    cells = [run_name(*c) for c in grid(params).every]
    for name in cells:
        (files.students / f"{name}.json").write_text("{}")
        (files.models / f"{name}.pt").write_bytes(b"")
    files.check(params)
    (files.models / f"{cells[0]}.pt").unlink()
    with pytest.raises(ArtifactError, match=rf"{cells[0]}.pt not found: run `dvc repro`"):
        files.check(params)
    (files.reports / "claims.md").unlink()
    with pytest.raises(ArtifactError, match="claims.md not found"):
        files.check(params)
