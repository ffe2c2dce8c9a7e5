"""One grid: the students dvc.yaml's matrices train (and the evaluate stage's outputs) are exactly
the cells of pipeline/grid.py, which the report, the evaluation and the MLflow records read."""

from pathlib import Path

import pytest

from pipeline.grid import grid, run_name, student_path
from pipeline.params import load_params
from tests.pipeline_copy import TINY, copy_repo, repo_params


@pytest.mark.parametrize("override", [{}, TINY], ids=["defaults", "tiny"])
def test_dvc_yaml_trains_exactly_the_cells_of_the_grid(tmp_path, override):
    from dvc.repo import Repo

    repo = copy_repo(tmp_path / "repo", override)
    with Repo(str(repo)) as dvc_repo:
        trained = {
            str(out.def_path): [str(p) for p in stage.params[0].params] if stage.params else []
            for stage in dvc_repo.index.stages
            for out in stage.outs
            if str(out.def_path).startswith("models/students/")
        }
    params = load_params(repo / "params.yaml")
    cells = grid(params).every
    folders = {str(student_path(Path("models/students"), *cell).parent) for cell in cells}
    assert sorted(trained) == sorted(folders)
    for folder, keys in trained.items():  # each stage trains the seeds it depends on, as the grid has them
        seeds = [cell[3] for cell in cells if str(student_path(Path("models/students"), *cell).parent) == folder]
        key = "ceiling.seeds" if "ceiling-" in folder else "seeds"
        assert key in keys and seeds == list(params.ceiling.seeds if key == "ceiling.seeds" else params.seeds)


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
    for cell, name in zip(grid(params).every, cells):
        (files.students / f"{name}.json").write_text("{}")
        student_path(files.models, *cell).parent.mkdir(exist_ok=True)
        student_path(files.models, *cell).write_bytes(b"")
    files.check(params)
    student_path(files.models, *grid(params).every[0]).unlink()
    with pytest.raises(ArtifactError, match=rf"{cells[0]}.pt not found: run `dvc repro`"):
        files.check(params)
    (files.reports / "claims.md").unlink()
    with pytest.raises(ArtifactError, match="claims.md not found"):
        files.check(params)
