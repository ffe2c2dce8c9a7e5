"""params.yaml is validated once, with messages that name the key and the fix."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamsError, load_params, parse_params, validate

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_load():
    p = load_params(REPO / "params.yaml")
    assert p.max_budget == max(p.budgets) and p.student.dim != p.teacher.dim


@pytest.mark.parametrize("raw, message", [
    ({"budgets": [10, 0]}, "'budgets' must all be positive"),
    ({"budgets": [10, -5]}, "'budgets' must all be positive"),
    ({"budgets": [10, 10]}, "duplicates"),
    ({"budgets": []}, "'budgets' must be a non-empty list"),
    ({"budgets": [1.5]}, r"'budgets\[0\]' must be an integer"),
    ({"student": {"dim": 0}}, "'student.dim' must be > 0"),
    ({"student": {"arch": "resnet9000"}}, "'student.arch' = 'resnet9000' is not a known model"),
    ({"student": {"weights": "efficientnet-lite"}}, "'student.weights' initialises a gem_<backbone> student"),
    ({"data": {"test": "roxford5k"}}, "'data.test' must be split for the fashion-mnist pool"),
    ({"data": {"dataset": "sfm120k"}}, "'data.test' must name a test set"),
    ({"data": {"dataset": "folder", "test": "revisited"}}, "'data.test_dir' must name your folder"),
    ({"data": {"dataset": "folder", "test": "rparis6k", "distractors": 101}}, "'data.distractors' must be 0..100"),
    ({"teacher": {"kind": "cirtorch"}}, "'teacher.weights' must give the URL or path"),
    ({"teacher": {"kind": "gem"}}, "'teacher.kind' must be one of train, cirtorch"),
    ({"augment": {"alpha": 0}}, "'augment.alpha' must be > 0"),
    ({"augment": {"pairing": "nearest"}}, "'augment.pairing' must be one of random, knn"),
    ({"method": {"derd": {"space": "pixels", "losses": {"listwise": {}}}}}, "'method.derd.space' must be one of"),
    ({"method": {"derd": {"space": "none", "losses": {"triplet": {}}}}}, "'method.derd.losses.triplet' is not a known"),
    ({"method": {"derd": {"space": "none", "losses": {"listwise": {"tau_student": 0}}}}},
     "'method.derd.losses.listwise.tau_student' must be > 0"),
    ({"method": {"derd": {"space": "none", "losses": {"listwise": {"tau": 1}}}}},
     r"unknown key\(s\) method.derd.losses.listwise.tau"),
    ({"method": {"sup": {"space": "input", "losses": {"supcon": {}}}}, "methods": ["sup"]},
     "'method.sup.space' must be none"),
    ({"methods": ["derd", "distill"]}, "'methods' lists 'distill', which has no settings"),
    ({"methods": ["derd", "derd"]}, "'methods' has duplicates"),
    ({"seeds": [0, 0]}, "'seeds' must be distinct"),
    ({"train": {"stepz": 3}}, "unknown key.*train.stepz"),
    ({"teacher": "big"}, "'teacher' must be a mapping"),
])
def test_invalid_values_are_named(raw, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(raw)


def test_budget_larger_than_pool():
    with pytest.raises(ParamsError, match="exceeds the training pool of 100 images"):
        validate(parse_params({"budgets": [50, 200]}), pool_size=100)


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("budgets: [1, 2\n")
    with pytest.raises(ParamsError, match="params.yaml is not valid YAML"):
        load_params(path)


def test_defaults_round_trip(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert parse_params(raw) == load_params(REPO / "params.yaml")


@pytest.mark.parametrize("preset", sorted((REPO / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_are_valid_and_pass_through_dvc_set_params_unchanged(preset):
    import yaml

    from scripts.preset import leaves, merged, set_args

    values = yaml.safe_load(preset.read_text())
    proc = subprocess.run([sys.executable, "scripts/preset.py", str(preset), "--check"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    args = set_args(values)
    parsed = {a.split("=", 1)[0]: yaml.safe_load(a.split("=", 1)[1]) for a in args if a != "-S"}
    assert parsed == dict(leaves(values))
    assert merged(values)["data"]["test"] in ("roxford5k", "rparis6k")
