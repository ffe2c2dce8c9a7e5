"""The real pipeline, end to end: `dvc repro` on a tiny params override in a copy of the repo. The
run itself is shared (``finished_repo``); each test that changes params works on its own clone."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.pipeline_copy import TINY, clone, deep_update, dvc, ledger_calls, ledger_total, set_params

pytestmark = pytest.mark.e2e


def ran_stages(out: str) -> list[str]:
    return sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))


def test_outputs_of_every_stage(finished_repo):
    repo = finished_repo
    assert (repo / "data/raw/fashion-mnist/train-images-idx3-ubyte.gz").exists()
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    assert meta == {
        "dataset": "fashion-mnist",
        "test": "split",
        "pool_size": 6000,
        "n_queries": 100,
        "n_database": 900,
        "n_classes": 10,
        "skipped_images": 0,
    }
    assert json.loads((repo / "data/prepared/pool.json").read_text()) == {
        "dataset": "fashion-mnist",
        "pool_size": 6000,
        "n_classes": 10,
    }
    small, large = np.load(repo / "data/subsets/20.npy"), np.load(repo / "data/subsets/50.npy")
    students = repo / "models/students"  # one folder per training stage: its cell's seeds
    assert sorted(str(p.relative_to(students)) for p in students.glob("**/*.pt")) == sorted(
        f"{cell}/{cell}-0.pt"
        for cell in [f"{b}-{m}-small" for b in (20, 50) for m in ("derd", "supervised", "derd-plus")]
        + [f"{b}-derd-plus-tiny" for b in (20, 50)]
        + ["full-small", "full-tiny", "ceiling-small", "ceiling-tiny"]
        + ["20-derd-plus-nopool-small", "20-derd-plus-random-small"]
    )
    assert sorted(p.name for p in (repo / "models/pretrained").glob("*.pt")) == ["small.pt", "tiny.pt"]
    assert np.array_equal(small, large[:20])
    # the selected subsets and the lever's random one: training-pool images only, never the validation split
    from pipeline.distill.sampling import nested_subset, validation_split

    held_out = np.concatenate(validation_split(6000, 500, 50, 0))
    random20 = np.load(repo / "data/subsets-random/20.npy")
    assert np.array_equal(random20, nested_subset(6000, 20, 0)) and not np.array_equal(random20, small)
    assert not np.isin(large, held_out).any() and not np.isin(random20, held_out).any()
    with np.load(repo / "data/teacher/pool_descriptors.npz") as z:  # the ceiling's answers: the training pool
        assert len(z["indices"]) == 5500 and not np.isin(z["indices"], held_out).any() and str(z["skipped"]) == ""
    with np.load(repo / "data/teacher/train_descriptors.npz") as z:
        assert np.array_equal(z["indices"], large) and z["descriptors"].shape == (50, 128)
        descriptors = z["descriptors"]
    with np.load(repo / "data/augmented/20/0.npz") as z:
        assert len(z["i"]) == 80 and z["targets"].shape == (80, 128)
        assert np.array_equal(z["real_targets"], descriptors[:20])
    summary = pd.read_csv(repo / "reports/summary.csv")
    assert summary["method"].tolist() == (
        ["derd-plus"] * 2
        + ["derd"] * 2
        + ["supervised"] * 2  # recommended first
        + ["derd-plus-nopool", "derd-plus-random"]
    )  # the levers' cells
    assert summary["budget"].tolist() == [20, 50] * 3 + [20, 20] and (summary["seeds"] == 1).all()
    # derd-plus learns the teacher's space: it is also evaluated against the teacher's database
    assert summary.loc[summary["method"].str.startswith("derd-plus"), "asym_mean"].between(0, 1).all()
    assert summary.loc[~summary["method"].str.startswith("derd-plus"), "asym_mean"].isna().all()
    frontier = pd.read_csv(repo / "reports/frontier.csv")
    assert sorted(zip(frontier["size"], frontier["budget"].astype(str), frontier["method"])) == sorted(
        [(z, b, "derd-plus") for z in ("small", "tiny") for b in ("20", "50")]
        + [(z, "all", "supervised-full") for z in ("small", "tiny")]  # rows say what produced them
        + [(z, "pool", "derd-plus-ceiling") for z in ("small", "tiny")]
    )
    small_max = frontier.loc[frontier["size"] == "small", "mflops"].max()
    assert (frontier.loc[frontier["size"] == "tiny", "mflops"] < small_max).all()
    claims = (repo / "reports/claims.md").read_text()
    assert claims.count("- **(") == 8 and "fewer than 3, so no verdict below is beyond noise" in claims
    assert claims.count("1 seed only: noise not measured") >= 4  # each verdict line says it
    assert "(b) Interpolation" in claims and "not measured" in claims  # derd-noaug is not among TINY's methods
    assert "(g) Learning from the unqueried pool" in claims and "(h) Choosing what to ask" in claims
    assert (repo / "reports/frontier.png").stat().st_size > 10_000
    assert summary["map_mean"].between(0.1, 1).all() and summary["teacher_map"].between(0.3, 1).all()
    assert np.allclose(summary["ratio"], summary["map_mean"] / summary["teacher_map"], atol=1e-3)
    for _, cell in summary.groupby("budget"):  # the best method per budget is marked, once
        assert cell["best"].sum() == 1 and cell.loc[cell["best"], "map_mean"].item() == cell["map_mean"].max()
    assert (repo / "reports/map_vs_budget.png").stat().st_size > 10_000
    md = (repo / "reports/summary.md").read_text()
    assert "| method | B=20 (0.333%) | B=50 (0.833%) |" in md and md.count("**") == 2 * 2
    assert (
        "| size | MFLOPs / image | descriptors / s | B=20 | B=50 | all labels, no teacher "
        "| every pool image answered (ceiling) |"
    ) in md
    assert "Distillation ceiling (small, `derd-plus` with every training-pool image answered" in md
    efficiency = json.loads((repo / "metrics/efficiency.json").read_text())
    assert efficiency["student_parameters"] < efficiency["teacher_parameters"]
    assert 0 < efficiency["student_flops_per_image"] < efficiency["teacher_flops_per_image"]
    assert efficiency["teacher_images_per_second"] > 0 and efficiency["throughput_ratio"] > 1
    assert "descriptors / s" in md
    teacher = json.loads((repo / "metrics/teacher.json").read_text())
    assert teacher["test_queries"] == 1000 == teacher["test_images"]  # counted apart from the training budget
    assert ledger_total(repo, "test") == 1000


def test_ledger_holds_exactly_max_budget(finished_repo):
    assert ledger_total(finished_repo) == 50
    queries = json.loads((finished_repo / "metrics/queries.json").read_text())
    assert queries["train_queries"] == 50 == queries["sent"] and queries["budget"] == 50
    calls = ledger_calls(finished_repo.parent / "teacher-store")
    assert calls and all(c["outcome"] == "answered" for c in calls)
    # the ceiling's calls come after the budget's, under their own purpose: the rest of the training pool
    assert ledger_total(finished_repo, "ceiling") == 5500 - 50
    assert {c["purpose"] for c in calls} == {"train", "test", "ceiling"}


def test_mlflow_runs(finished_repo):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{finished_repo / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("data-efficient-ranking-distillation")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    runs = mlflow.search_runs(experiment_names=[exp.name])
    students = runs[runs["tags.role"] == "student"]
    cells = sorted(zip(students["tags.method"], students["params.budget"], students["tags.size"]))
    assert cells == sorted(
        [(m, str(b), "small") for m in ("derd", "supervised", "derd-plus") for b in (20, 50)]
        + [("derd-plus", str(b), "tiny") for b in (20, 50)]
        + [("supervised-full", "all", z) for z in ("small", "tiny")]
        + [("derd-plus-ceiling", "pool", z) for z in ("small", "tiny")]
        + [("derd-plus-nopool", "20", "small"), ("derd-plus-random", "20", "small")]
    )
    queries = students.groupby("tags.method")["params.teacher_queries"].apply(lambda q: sorted(q.astype(int)))
    assert queries["derd"] == [20, 50] and queries["supervised"] == [0, 0]  # the baseline asks the teacher nothing
    assert queries["supervised-full"] == [0, 0] and queries["derd-plus-ceiling"] == [5500, 5500]
    starts = dict(zip(students["tags.method"] + "@" + students["tags.size"], students["params.method_params.pool"]))
    assert starts["derd-plus-nopool@small"] == "none" and starts["derd-plus@small"] == "pretrain"
    label_methods = students["tags.method"].isin(["supervised", "supervised-full"])
    assert set(students.loc[label_methods, "params.uses_labels"]) == {"True"}
    assert set(students.loc[~label_methods, "params.uses_labels"]) == {"False"}
    assert students["metrics.map"].between(0.1, 1).all() and students["metrics.map_easy"].notna().all()
    assert (students["metrics.flops_per_image"] > 0).all()  # every run carries its cost
    assert set(students["params.schedule.steps"]) == {"30", "10"}  # the ceiling: ceiling.steps
    full = students[students["tags.method"] == "supervised-full"]
    assert (full["params.train_images"].astype(int) == 5500).all()  # the pool less the validation split
    assert runs["tags.config"].nunique() == 1 and runs["tags.config"].notna().all()  # one configuration
    assert set(runs["tags.role"]) == {"student", "teacher", "report"}
    assert (students["params.config.data.n_queries"] == "100").all()  # each record shows its configuration
    assert set(students["params.config.method.derd.space"].dropna()) == {"representation"}
    arch = {"small": "student_fast-64d", "tiny": "student_tiny-32d"}
    assert set(students["tags.mlflow.runName"]) == {  # what each run is, and its mAP, in its name
        f"mAP {mp:.4f} | B={b} {m} seed 0 {z} {arch[z]}"
        for b, m, z, mp in zip(
            students["params.budget"], students["tags.method"], students["tags.size"], students["metrics.map"]
        )
    }
    client = mlflow.tracking.MlflowClient()
    first = students.iloc[0]
    run_id = first["run_id"]
    assert len(client.get_metric_history(run_id, "train_loss")) == 3  # the training curve
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    gallery = (
        f"full-{first['tags.size']}-0.png"
        if first["tags.method"] == "supervised-full"
        else f"ceiling-{first['tags.size']}-0.png"
        if first["tags.method"] == "derd-plus-ceiling"
        else f"{first['params.budget']}-{first['tags.method']}-{first['tags.size']}-{first['params.seed']}.png"
    )
    assert {"metrics", gallery} <= artifacts  # its gallery and metrics file are logged with the run
    run = client.get_run(run_id)
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest
    for budget in (20, 50):  # the best student of each budget is registered, with its model
        assert client.search_model_versions(f"name='derd-student-B{budget}'")
    run_id = client.search_model_versions("name='derd-student-B50'")[0].run_id
    model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")  # uint8 images in, descriptors out
    images = np.load(finished_repo / "data/prepared/test.npz")["query_images"][:3]
    import torch

    assert model(torch.from_numpy(images)).shape[0] == 3
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["dtype"] == "uint8"
    assert runs[runs["tags.role"] == "teacher"]["metrics.map"].between(0.3, 1).all()


def test_no_change_repro_does_nothing(finished_repo, tmp_path):
    repo = clone(finished_repo, tmp_path / "copy")
    out = dvc(repo, "repro").stdout
    assert "Data and pipelines are up to date" in out


def _workspace_figures(repo) -> dict[str, float]:
    """mAP of every evaluated model, as metrics/ holds it now."""
    figures = {p.stem: json.loads(p.read_text()).get("map") for p in (repo / "metrics/students").glob("*.json")}
    figures["teacher"] = json.loads((repo / "metrics/teacher.json").read_text())["map"]
    return figures


def _store_figures(repo, config: str) -> dict[str, float]:
    """mAP of every record of one configuration in the copy's MLflow store."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["data-efficient-ranking-distillation"], filter_string=f"tags.config = '{config}'"
    )
    if runs.empty:
        return {}
    runs = runs[runs["tags.role"].isin(["student", "teacher"])]
    names = runs["tags.cell"].where(runs["tags.role"] == "student", "teacher")
    assert names.is_unique, f"configuration {config} has two records of one model: {sorted(names)}"
    return dict(zip(names, runs["metrics.map"]))


def test_mlflow_keeps_every_configurations_figures_through_an_edit_and_its_revert(finished_repo, tmp_path):
    """A new test split (`data.n_queries`) makes only evaluations stale; after `dvc repro` and after
    the edit is reverted (DVC restores every stage from its run cache), MLflow holds the figures now in
    metrics/ under the configuration now in params.yaml, and the other configuration's records unchanged."""
    from pipeline.params import load_params
    from pipeline.tracking import workspace_configuration

    repo = clone(finished_repo, tmp_path / "copy")
    config = lambda: workspace_configuration(load_params(repo / "params.yaml"), repo / "data/code")[0]  # noqa: E731
    first, first_config = _workspace_figures(repo), config()
    assert _store_figures(repo, first_config) == {k: v for k, v in first.items() if v is not None}
    set_params(repo, deep_update(dict(TINY), {"data": {"n_queries": 60}}))
    out = dvc(repo, "repro").stdout  # DVC reruns (or restores) a stage only when its inputs changed
    redone = set(ran_stages(out)) | {line.split("'")[1] for line in out.splitlines() if "is cached - skipping" in line}
    assert {"prepare", "evaluate-teacher", "evaluate"} <= redone, out
    assert not {s for s in redone if s.startswith(("sample", "train", "full", "dump", "augment"))}, out
    second, second_config = _workspace_figures(repo), config()
    assert second_config != first_config and second["teacher"] != first["teacher"]
    # the first configuration's records deleted: only the revert's own `track` can bring them back
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("data-efficient-ranking-distillation").experiment_id
    for run in client.search_runs([exp_id], f"tags.config = '{first_config}'"):
        client.delete_run(run.info.run_id)
    assert not _store_figures(repo, first_config)
    set_params(repo, dict(TINY))  # the edit reverted
    out = dvc(repo, "repro").stdout
    assert ran_stages(out) == ["track"], out  # every other stage restored from the run cache
    assert _workspace_figures(repo) == first
    assert _store_figures(repo, first_config) == {k: v for k, v in first.items() if v is not None}
    assert _store_figures(repo, second_config) == {k: v for k, v in second.items() if v is not None}
    assert "Data and pipelines are up to date" in dvc(repo, "repro").stdout


def test_one_methods_knob_makes_only_that_methods_stages_stale(finished_repo, tmp_path):
    repo = clone(finished_repo, tmp_path / "copy")
    set_params(repo, deep_update(dict(TINY), {"method": {"derd": {"losses": {"listwise": {"tau_student": 0.1}}}}}))
    status = dvc(repo, "status").stdout
    assert "train@20-derd:" in status and "train@50-derd:" in status
    assert "supervised" not in status
    assert "dump" not in status and "teacher:" not in status and "augment" not in status


@pytest.mark.trains
def test_a_new_budget_queries_only_new_images_and_retrains_only_new_cells(finished_repo, tmp_path):
    """A new largest budget, through `dvc repro` itself (lowering one sends nothing: test_queries,
    test_teacher_sequence)."""
    repo = clone(finished_repo, tmp_path / "copy")
    set_params(repo, deep_update(dict(TINY), {"budgets": [20, 50, 70], "methods": ["derd"], "sizes": ["small"]}))
    cells = [f"train@{b}-derd" for b in (20, 50, 70)]
    out = dvc(repo, "repro", *cells).stdout  # every student and what it needs (not their evaluation)
    ran = ran_stages(out)
    trained = {name for name in ran if name.startswith(("train@", "train-sizes@", "full@"))}
    # the old budgets' subsets and targets come out byte-identical, so their students are not retrained
    assert trained == {"train@70-derd"}
    assert not {"prepare", "teacher", "evaluate-teacher"} & set(ran)
    # the 20 new images were answered for the distillation ceiling already: nothing is sent again
    assert "teacher queries: 0 sent this run, 50 for these 70 images" in out
    assert ledger_total(repo) == 50
    assert "Data and pipelines are up to date" in dvc(repo, "repro", *cells).stdout


def test_the_derd_command_reports_and_tells_where_things_stand(finished_repo, monkeypatch):
    from click.testing import CliRunner

    from stages.cli import main

    monkeypatch.chdir(finished_repo)
    report = CliRunner().invoke(main, ["report"])
    assert report.exit_code == 0, report.output
    assert "B=20" in report.output and "derd-plus" in report.output
    assert "(a) At the two smallest budgets" in report.output
    status = CliRunner().invoke(main, ["status"])
    assert status.exit_code == 0, status.output
    assert "budgets: 20, 50" in status.output
    assert "train: 1 requests, 50 images sent (50 answered, 0 lost" in status.output
    assert "training set of the last dump: 50 images sent for its 50 images, budget 50: 0 calls left" in status.output
    assert "pipeline: up to date" in status.output
    for command in ("run", "status", "report", "ui", "export", "serve-teacher"):
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        assert "derd " + command.split("-")[0] in help_text, command  # each --help has an example


def test_a_student_exports_to_onnx_and_torchscript_with_parity(finished_repo, tmp_path, monkeypatch):
    import json as js

    from click.testing import CliRunner

    from stages.cli import main

    monkeypatch.chdir(finished_repo)
    result = CliRunner().invoke(
        main, ["export", "models/students/50-derd-plus-small/50-derd-plus-small-0.pt", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    parity = js.loads((tmp_path / "parity.json").read_text())
    assert parity["ok"] and max(parity["max_abs_difference_100_images"].values()) <= 1e-4
    assert all(abs(m - parity["map"]["pytorch"]) <= 1e-4 for m in parity["map"].values())
    assert (tmp_path / "model.onnx").stat().st_size > 10_000 and (tmp_path / "model.torchscript.pt").exists()


def test_no_unqueried_pool_image_reaches_the_teacher_for_the_budget(finished_repo):
    """The training purpose sent exactly the largest subset's pixels; every other pool image the store
    holds was sent under the ceiling's own purpose (after the budget's dump), none of the validation split."""
    from pipeline.data import prepared
    from pipeline.teacher.inputs import pixels_key

    store_dir = next((finished_repo.parent / "teacher-store").glob("train-*"))
    calls = ledger_calls(finished_repo.parent / "teacher-store")

    def keys_of(purpose):
        return {
            k
            for c in calls
            if c["purpose"] == purpose
            for k in (store_dir / "calls" / f"{c['call']}.keys").read_bytes().split()
        }

    pool = prepared.pool_images(finished_repo / "data/prepared")
    subset = np.load(finished_repo / "data/subsets/50.npy")
    assert keys_of("train") == {pixels_key(pool[i]) for i in subset}
    with np.load(finished_repo / "data/teacher/pool_descriptors.npz") as z:
        pool_keys = {pixels_key(pool[i]) for i in z["indices"]}
    assert keys_of("ceiling") == pool_keys - keys_of("train")
    order = [c["purpose"] for c in calls]  # in the order they were sent
    assert max(i for i, p in enumerate(order) if p == "train") < min(i for i, p in enumerate(order) if p == "ceiling")


def test_without_the_ceiling_nothing_beyond_the_budget_is_asked_and_the_report_says_why(finished_repo, tmp_path):
    """ceiling.run false (as for a served teacher by default): no call at all, the ceiling and the random
    lever are reported as not measured with the reason, and the other claims stand."""
    from tests.pipeline_copy import edit_params, run_stage

    repo = clone(finished_repo, tmp_path / "copy")
    before = len(ledger_calls(repo.parent / "teacher-store"))
    edit_params(repo, {"ceiling": {"run": "false"}})
    for name in ("dump-pool", "ceiling@small", "ceiling@tiny", "lever-random@20", "evaluate", "report"):
        out = run_stage(repo, name).output
        if name == "dump-pool":
            assert "distillation ceiling skipped: ceiling.run is false" in out
    assert len(ledger_calls(repo.parent / "teacher-store")) == before
    assert json.loads((repo / "metrics/students/ceiling-small-0.json").read_text())["skipped"]
    md = (repo / "reports/summary.md").read_text()
    assert "Distillation ceiling: not measured in this run (ceiling.run is false)" in md
    claims = (repo / "reports/claims.md").read_text()
    assert "(h) Choosing what to ask" in claims
    assert (
        "its random subsets' answers come from the ceiling's, which were not asked for (ceiling.run is false)"
    ) in claims


def _stale(repo) -> set[str]:
    status = dvc(repo, "status").stdout
    return {line[:-1] for line in status.splitlines() if line.endswith(":") and not line[0].isspace()}


def test_the_pool_setting_or_the_strategy_makes_only_what_depends_on_it_stale(finished_repo, tmp_path):
    from tests.pipeline_copy import edit_params

    repo = clone(finished_repo, tmp_path / "copy")
    edit_params(repo, {"method": {"derd": {"pool": "none"}}})
    assert _stale(repo) == {"train@20-derd", "train@50-derd", "report", "track"}
    edit_params(repo, {"method": {"derd": {"pool": "pretrain"}}, "sample": {"strategy": "random"}})
    stale = _stale(repo)
    assert {"sample", "train@20-derd", "train-sizes@50-tiny", "lever-nopool@20"} <= stale
    untouched = (
        "prepare",
        "teacher",
        "pretrain",
        "full",
        "ceiling",
        "dump-pool",
        "sample-random",
        "lever-random",
        "evaluate-teacher",
    )
    assert not {s for s in stale if s.startswith(untouched)}, stale


def test_the_evaluation_shared_between_processes_gives_the_same_figures(finished_repo, tmp_path):
    """Two processes, one thread each (runtime.threads 2), give every student the figures and gallery
    one process gave them with one thread; a student missing in one process stops the other, in one
    line each."""
    import subprocess

    from tests.pipeline_copy import edit_params
    from tests.test_faults import stage_cmd, stage_env

    repo = clone(finished_repo, tmp_path / "copy")
    edit_params(repo, {"runtime": {"threads": 2}})
    done = subprocess.run(stage_cmd("evaluate", repo), cwd=repo, env=stage_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for folder in ("metrics/students", "galleries/students"):
        names = sorted(p.name for p in (finished_repo / folder).glob("*.json"))
        assert names and names == sorted(p.name for p in (repo / folder).glob("*.json"))
        for name in names:
            assert json.loads((repo / folder / name).read_text()) == json.loads(
                (finished_repo / folder / name).read_text()
            ), name
    (repo / "models/students/50-derd-small/50-derd-small-0.pt").unlink()
    failed = subprocess.run(stage_cmd("evaluate", repo), cwd=repo, env=stage_env(), capture_output=True, text=True)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "error [evaluate]: models/students/50-derd-small/50-derd-small-0.pt not found" in failed.stderr
    assert "error [evaluate]: evaluation " in failed.stderr and " of 2 (" in failed.stderr
