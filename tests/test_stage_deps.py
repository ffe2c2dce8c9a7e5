"""No stale outputs: every DVC stage depends on the code it runs, through its fingerprint."""

import shutil

import yaml

from pipeline.code_deps import closure, fingerprint, stage_modules
from scripts.stage_deps import REPO, check, stage_module


def test_every_stage_depends_on_its_own_fingerprint_and_on_no_code_file():
    mismatches = {
        stage: (sorted(missing), sorted(extra)) for stage, (missing, extra) in check().items() if missing or extra
    }
    assert not mismatches, f"run `python scripts/stage_deps.py --write` to fix dvc.yaml: {mismatches}"


def test_the_code_stage_writes_a_fingerprint_for_every_stage_of_dvc_yaml():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert {stage_module(s["cmd"]) for s in stages.values()} <= set(stage_modules(REPO))


def test_the_walk_sees_function_level_imports():
    """The dump's teacher client is imported inside a function: the walk must still find it."""
    assert any(str(p) == "pipeline/teacher/clients.py" for p in closure(REPO, "stages.dump"))
    assert not any(str(p).startswith("pipeline/teacher/") for p in closure(REPO, "stages.sample"))


def test_an_edit_changes_the_fingerprints_of_exactly_the_stages_that_run_it(tmp_path):
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    before = {m: fingerprint(tmp_path, m) for m in stage_modules(tmp_path)}
    report_code = tmp_path / "pipeline" / "report.py"
    report_code.write_text(report_code.read_text() + "\n# an edit\n")
    changed = {m for m in before if fingerprint(tmp_path, m) != before[m]}
    assert "stages.report" in changed and "stages.train" not in changed and "stages.dump" not in changed
    assert changed == {m for m in before if "pipeline/report.py" in before[m]}


def test_a_missing_or_extra_code_dependency_is_reported(tmp_path):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages["stages"]["dump"]["deps"] = [d for d in stages["stages"]["dump"]["deps"] if not d.startswith("data/code")]
    stages["stages"]["sample"]["deps"].append("pipeline/report.py")
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump(stages))
    report = check(path)
    assert report["dump"][0] == {"data/code/stages.dump.txt"}
    assert report["sample"][1] == {"pipeline/report.py"}
