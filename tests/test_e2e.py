"""The real pipeline, end to end: `dvc repro` on a tiny params override in a copy of the repo."""
import json

import numpy as np
import pandas as pd
import pytest

from tests.pipeline_copy import TINY, copy_repo, deep_update, dvc, ledger_total, set_params

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = copy_repo(tmp_path_factory.mktemp("e2e") / "repo", TINY)
    dvc(path, "repro")
    return path


def test_outputs_of_every_stage(repo):
    assert (repo / "data/raw/fashion-mnist/train-images-idx3-ubyte.gz").exists()
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    assert meta == {"dataset": "fashion-mnist", "test": "split", "pool_size": 60000, "n_queries": 200,
                    "n_database": 9800, "n_classes": 10, "skipped_images": 0}
    small, large = np.load(repo / "data/subsets/20.npy"), np.load(repo / "data/subsets/50.npy")
    assert np.array_equal(small, large[:20])
    with np.load(repo / "data/teacher/train_descriptors.npz") as z:
        assert np.array_equal(z["indices"], large) and z["descriptors"].shape == (50, 128)
        descriptors = z["descriptors"]
    with np.load(repo / "data/augmented/20-0.npz") as z:
        assert len(z["i"]) == 80 and z["targets"].shape == (80, 128)
        assert np.array_equal(z["real_targets"], descriptors[:20])
    summary = pd.read_csv(repo / "reports/summary.csv")
    assert summary["method"].tolist() == ["derd"] * 2 + ["supervised"] * 2
    assert summary["budget"].tolist() == [20, 50] * 2 and (summary["seeds"] == 1).all()
    assert summary["map_mean"].between(0.1, 1).all() and summary["teacher_map"].between(0.3, 1).all()
    assert np.allclose(summary["ratio"], summary["map_mean"] / summary["teacher_map"], atol=1e-3)
    for _, cell in summary.groupby("budget"):  # the best method per budget is marked, once
        assert cell["best"].sum() == 1 and cell.loc[cell["best"], "map_mean"].item() == cell["map_mean"].max()
    assert (repo / "reports/map_vs_budget.png").stat().st_size > 10_000
    md = (repo / "reports/summary.md").read_text()
    assert "| method | B=20 (0.033%) | B=50 (0.083%) |" in md and md.count("**") == 2 * 2
    efficiency = json.loads((repo / "metrics/efficiency.json").read_text())
    assert efficiency["student_parameters"] < efficiency["teacher_parameters"]
    assert 0 < efficiency["student_flops_per_image"] < efficiency["teacher_flops_per_image"]
    assert efficiency["throughput_ratio"] > 1 and "descriptors / s" in md
    teacher = json.loads((repo / "metrics/teacher.json").read_text())
    assert teacher["test_queries"] == 10000  # counted apart from the training budget
    assert ledger_total(repo, "test") == 10000


def test_ledger_holds_exactly_max_budget(repo):
    assert ledger_total(repo) == 50
    assert json.loads((repo / "metrics/queries.json").read_text())["train_queries"] == 50


def test_mlflow_runs(repo):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["data-efficient-ranking-distillation"])
    students = runs[runs["tags.role"] == "student"]
    assert sorted(zip(students["tags.method"], students["params.budget"].astype(int))) == [
        (m, b) for m in ("derd", "supervised") for b in (20, 50)]
    queries = students.groupby("tags.method")["params.teacher_queries"].apply(lambda q: sorted(q.astype(int)))
    assert queries["derd"] == [20, 50] and queries["supervised"] == [0, 0]  # the baseline asks the teacher nothing
    assert set(students.loc[students["tags.method"] == "supervised", "params.uses_labels"]) == {"True"}
    assert set(students.loc[students["tags.method"] != "supervised", "params.uses_labels"]) == {"False"}
    assert students["metrics.map"].between(0.1, 1).all()
    assert set(students["params.student.dim"]) == {"64"} and set(students["params.schedule.steps"]) == {"30"}
    client = mlflow.tracking.MlflowClient()
    run_id = students["run_id"].iloc[0]
    assert len(client.get_metric_history(run_id, "train_loss")) == 3  # the training curve
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for d in ("model", "metrics") for a in client.list_artifacts(run_id, d)}
    assert any(p.endswith(".pt") for p in artifacts) and any(p.endswith(".json") for p in artifacts)
    assert runs[runs["tags.role"] == "teacher"]["metrics.map"].between(0.3, 1).all()


def test_no_change_repro_does_nothing(repo):
    out = dvc(repo, "repro").stdout
    assert "Data and pipelines are up to date" in out


def test_one_methods_knob_reruns_only_that_method_and_never_queries_again(repo):
    override = {"method": {"derd": {"losses": {"listwise": {"tau_student": 0.1}}}}}
    set_params(repo, deep_update(dict(TINY), override))
    status = dvc(repo, "status").stdout
    assert "train@20-derd-0" in status and "train@50-derd-0" in status
    assert "supervised" not in status
    assert "dump" not in status and "teacher:" not in status and "augment" not in status
    out = dvc(repo, "repro").stdout
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    assert ran == ["evaluate@20-derd-0", "evaluate@50-derd-0", "report", "train@20-derd-0", "train@50-derd-0"]
    assert ledger_total(repo) == 50


def test_adding_a_method_and_a_seed_trains_only_the_new_cells(repo):
    override = {"method": {"derd": {"losses": {"listwise": {"tau_student": 0.1}}}}, "budgets": [50],
                "methods": ["derd", "supervised", "regression"], "seeds": [0, 1]}
    set_params(repo, deep_update(dict(TINY), override))
    out = dvc(repo, "repro").stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    trained = {name for name in ran if name.startswith("train@")}
    assert trained == {"train@50-regression-0", "train@50-regression-1", "train@50-derd-1", "train@50-supervised-1"}
    assert "teacher" not in ran and "teacher queries: 0 this run, 50 in total" in out
    summary = pd.read_csv(repo / "reports/summary.csv")
    assert len(summary) == 3 and (summary["seeds"] == 2).all() and (summary["map_std"] > 0).all()
    assert "±" in (repo / "reports/summary.md").read_text()
    assert ledger_total(repo) == 50
    set_params(repo, TINY)


def test_budget_changes_query_only_new_images(repo):
    set_params(repo, deep_update(dict(TINY), {"budgets": [10, 20, 50]}))  # a new, smaller budget
    out = dvc(repo, "repro").stdout
    assert "teacher queries: 0 this run, 50 in total" in out
    assert ledger_total(repo) == 50
    set_params(repo, deep_update(dict(TINY), {"budgets": [10, 20, 50, 70]}))  # a new largest budget
    out = dvc(repo, "repro").stdout
    assert "teacher queries: 20 this run, 70 in total" in out
    assert ledger_total(repo) == 70
    # the smaller budgets' training data is unchanged, so their students are not retrained
    assert "Running stage 'train@70-derd-0'" in out and "Running stage 'train@50-derd-0'" not in out
    assert len(pd.read_csv(repo / "reports/summary.csv")) == 4 * 2
