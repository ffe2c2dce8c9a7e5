"""params.yaml is validated once, with messages that name the key and the fix; it is the only place
where defaults live."""

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.errors import ParamsError
from pipeline.params import LossTerms, MethodParams, Params, load_params, parse_params, validate
from tests.pipeline_copy import deep_update

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((REPO / "params.yaml").read_text())


def with_defaults(override: dict) -> dict:
    return deep_update(copy.deepcopy(DEFAULTS), override)


def leaves(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


def test_repository_params_load():
    p = load_params(REPO / "params.yaml")
    assert p.max_budget == max(p.budgets) and p.size().dim > 0 and p.student in p.sizes


def test_the_typed_view_declares_no_defaults():
    """Every value comes from params.yaml: the models only hold types and ranges (the per-method
    overrides and the loss terms a method leaves out are absences, not defaults)."""
    optional = {(MethodParams, "steps"), (MethodParams, "lr")} | {(LossTerms, n) for n in LossTerms.model_fields}
    seen, todo = set(), [Params]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.is_required() or (model, name) in optional, f"{model.__name__}.{name} has a default"
            for t in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(t, type) and hasattr(t, "model_fields"):
                    todo.append(t)
    assert len(seen) > 10


@pytest.mark.parametrize("key", [k for k in leaves(DEFAULTS) if k[0] != "method"], ids=".".join)
def test_every_key_must_be_in_params_yaml(key):
    raw = copy.deepcopy(DEFAULTS)
    parent = raw
    for k in key[:-1]:
        parent = parent[k]
    del parent[key[-1]]
    with pytest.raises(ParamsError, match=rf"'{'.'.join(key)}' is missing"):
        parse_params(raw)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"budgets": [10, 0]}, r"'budgets\[1\]': input should be greater than 0, got 0"),
        ({"budgets": [10, 10]}, "'budgets' has duplicates"),
        ({"budgets": []}, "'budgets': tuple should have at least 1 item"),
        ({"budgets": [1.5]}, r"'budgets\[0\]': input should be a valid integer"),
        ({"students": {"small": {"dim": 0}}}, "'students.small.dim': input should be greater than 0"),
        (
            {"students": {"small": {"weights": "efficientnet-lite"}}},
            "'students.small.weights' initialises a gem_<backbone>",
        ),
        (
            {"student": "huge"},
            "'student' names the student size 'huge', which 'students' does not define; choose from small",
        ),
        ({"sizes": ["small", "large"]}, "'sizes' must include the compared size 'student'"),
        ({"methods": ["derd", "derd-plus"]}, "'methods' lists the recommended method 'derd-plus'"),
        ({"recommended": "best"}, "'recommended' = 'best' has no settings under 'method'"),
        ({"full": {"method": "derd"}}, "'full.method' must name a method that learns from labels"),
        ({"data": {"test": "roxford5k"}}, "'data.test' must be split for the fashion-mnist pool"),
        ({"data": {"dataset": "sfm120k", "raw_dir": "x"}}, "'data.test' must name a test set"),
        ({"data": {"dataset": "folder", "test": "revisited"}}, "'data.test_dir' must name your folder"),
        (
            {"data": {"dataset": "folder", "test": "rparis6k", "distractors": 101}},
            "'data.distractors': input should be less",
        ),
        ({"teacher": {"kind": "cirtorch"}}, "'teacher.weights' must give the URL or path"),
        ({"teacher": {"kind": "gem"}}, "'teacher.kind': input should be 'train', 'cirtorch'"),
        ({"teacher": {"kind": "mlflow"}}, "'teacher.url' must be set for teacher.kind mlflow: the server's base URL"),
        (
            {"teacher": {"kind": "kserve-v2", "url": "http://127.0.0.1:8080"}},
            "'teacher.model' must name the served model",
        ),
        ({"teacher": {"kind": "mlflow", "url": "127.0.0.1:5001"}}, "'teacher.url' must start with http"),
        ({"teacher": {"kind": "command"}}, "'teacher.command' must be set"),
        ({"teacher": {"kind": "precomputed"}}, "'teacher.descriptors' must be set"),
        (
            {"data": {"dataset": "sfm120k", "raw_dir": "x", "test": "roxford5k"}},
            "'teacher.kind' train learns a small CNN on an array pool and cannot read the photo pool",
        ),
        ({"augment": {"alpha": 0}}, "'augment.alpha': input should be greater than 0"),
        ({"augment": {"pairing": "nearest"}}, "'augment.pairing': input should be 'random' or 'knn'"),
        ({"method": {"derd": {"space": "pixels"}}}, "'method.derd.space': input should be"),
        (
            {"method": {"derd": {"losses": {"triplet": {}}}}},
            "unknown key 'method.derd.losses.triplet'; allowed: listwise",
        ),
        (
            {"method": {"derd": {"losses": {"listwise": {"tau_student": 0}}}}},
            "'method.derd.losses.listwise.tau_student': input should be greater than 0",
        ),
        ({"method": {"derd": {"losses": {"listwise": {"tau": 1}}}}}, "unknown key 'method.derd.losses.listwise.tau'"),
        (
            {
                "method": {
                    "sup": {
                        "space": "input",
                        "flip_shift": False,
                        "pool": "none",
                        "losses": {"supcon": {"weight": 1, "temperature": 1}},
                    }
                },
                "methods": ["sup"],
            },
            "'method.sup.space' must be none",
        ),
        ({"methods": ["derd", "distill"]}, "'methods' lists 'distill', which has no settings"),
        ({"methods": ["derd", "derd"]}, "'methods' has duplicates"),
        ({"seeds": [0, 0]}, "'seeds' must be distinct"),
        ({"sample": {"strategy": "kcenter"}}, "'sample.strategy': input should be 'random' or 'typical'"),
        ({"sample": {"features": "huge"}}, "'sample.features' must be pixels or a student size of 'sizes'.*medium"),
        ({"levers": {"budgets": [60, 100]}}, "'levers.budgets' lists 100, which is not in 'budgets'"),
        ({"ceiling": {"run": "maybe"}}, "'ceiling.run': input should be 'auto', 'true' or 'false'"),
        ({"method": {"derd": {"pool": "all"}}}, "'method.derd.pool': input should be 'none' or 'pretrain'"),
        ({"pretrain": {"min_scale": 0}}, "'pretrain.min_scale': input should be greater than 0"),
        (
            {"data": {"pool_limit": 5000}},  # the fix that works: a smaller validation split (not "budgets <= 0")
            "exceeds the training pool of 5000 images less the 5000 held out.*use sample.val_size <= 2000$",
        ),
        ({"train": {"stepz": 3}}, "unknown key 'train.stepz'; allowed: steps, batch_size"),
        ({"teacher": "big"}, "'teacher' must be a mapping"),
        ({"budgets": [60000]}, "'budgets' max 60000 exceeds the training pool of 60000 images less the 5000"),
        ({"budgets": [600], "data": {"pool_limit": 1000}}, "exceeds the training pool of 1000 images"),
        (
            {"data": {"test_limit": 500, "n_queries": 500}},
            "'data.n_queries' .500. must be smaller than data.test_limit",
        ),
        (  # each range error names a value that works
            {"sample": {"val_queries": 5000}},
            r"'sample.val_queries' must be between 1 and sample.val_size - 1 .4999., got 5000; "
            r"e.g. sample.val_queries: 500$",
        ),
        ({"sample": {"val_size": 1}}, r"'sample.val_size' must be at least 2 .*, got 1; e.g. sample.val_size: 5000"),
        (  # checked before any training, not when the evaluation builds its index
            {"eval": {"index": "ivfpq", "pq_m": 48}},
            r"'eval.pq_m' = 48 must divide every descriptor size the index holds .\[128\].; choose one of "
            r"\[16, 32, 64, 128\]$",
        ),
    ],
)
def test_invalid_values_are_named(override, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(with_defaults(override))


def test_model_names_are_checked_before_a_model_is_built():
    from pipeline.models.registry import check_names

    with pytest.raises(ParamsError, match="'students.small.arch' = 'resnet9000' is not a known model; choose from"):
        check_names(parse_params(with_defaults({"students": {"small": {"arch": "resnet9000"}}})))
    check_names(parse_params(with_defaults({"teacher": {"kind": "mlflow", "url": "http://x", "arch": "unknown"}})))


def test_a_prepared_pool_bounds_the_budgets():
    with pytest.raises(ParamsError, match="exceeds the training pool of 100 images"):
        validate(
            parse_params(
                with_defaults(
                    {"data": {"dataset": "folder", "raw_dir": "mine"}, "budgets": [50], "levers": {"budgets": [50]}}
                )
            ),
            pool_size=100,
        )


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("budgets: [1, 2\n")
    with pytest.raises(ParamsError, match="params.yaml is not valid YAML"):
        load_params(path)


def test_a_bad_value_names_the_file_it_is_in(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(with_defaults({"students": {"small": {"dim": -1}}})))
    with pytest.raises(ParamsError, match=r"mine.yaml is invalid:\n  - 'students.small.dim'"):
        load_params(path)


@pytest.mark.parametrize("preset", sorted((REPO / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_are_valid_and_pass_through_dvc_set_params_unchanged(preset):
    from click.testing import CliRunner

    from scripts.preset import leaves as preset_leaves
    from scripts.preset import main, merged, set_args

    values = yaml.safe_load(preset.read_text())
    result = CliRunner().invoke(main, [str(preset), "--check"])
    assert result.exit_code == 0, result.output
    args = set_args(values)
    parsed = {a.split("=", 1)[0]: yaml.safe_load(a.split("=", 1)[1]) for a in args if a != "-S"}
    assert parsed == dict(preset_leaves(values))
    assert merged(values)["data"]["test"] in ("roxford5k", "rparis6k")


def test_a_published_teachers_descriptor_size_is_not_guessed_from_teacher_dim():
    """cirtorch / torchvision / efficientnet-lite teachers take their size from the weights, so only
    the students' sizes bound eval.pq_m here (a 2048-d teacher with 256-d students and pq_m 256 is valid)."""
    settings = {
        "eval": {"index": "ivfpq", "pq_m": 256},
        "teacher": {"kind": "cirtorch", "arch": "gem_resnet101", "weights": "w.pth"},
        "students": {"medium": {"dim": 256}},
    }
    parse_params(with_defaults(settings))
    with pytest.raises(
        ParamsError, match=r"'eval.pq_m' = 256 must divide every descriptor size the index holds .\[128, 256\]"
    ):
        parse_params(with_defaults({**settings, "teacher": {"kind": "train"}}))
