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
