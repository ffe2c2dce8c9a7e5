"""No stale outputs: every DVC stage depends on exactly the project modules its command imports."""
import yaml

from scripts.stage_deps import REPO, check, closure


def test_every_stage_depends_on_every_module_it_imports_and_no_other():
    mismatches = {stage: (sorted(map(str, missing)), sorted(map(str, extra)))
                  for stage, (missing, extra) in check().items() if missing or extra}
    assert not mismatches, f"run `python scripts/stage_deps.py --write` to fix dvc.yaml: {mismatches}"


def test_the_check_sees_function_level_imports():
    """The dump's teacher client is imported inside a function: the walk must still find it."""
    assert any(str(p) == "pipeline/teacher/clients.py" for p in closure("stages.dump"))
    assert not any(str(p).startswith("pipeline/teacher/") for p in closure("stages.sample"))


def test_a_missing_dependency_is_reported(tmp_path):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages["stages"]["dump"]["deps"] = [d for d in stages["stages"]["dump"]["deps"] if d != "pipeline/teacher/gate.py"]
    stages["stages"]["sample"]["deps"].append("pipeline/report.py")
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump(stages))
    report = check(path)
    assert [str(p) for p in report["dump"][0]] == ["pipeline/teacher/gate.py"]
    assert [str(p) for p in report["sample"][1]] == ["pipeline/report.py"]
