"""Typed view of ``params.yaml``, validated once on load (pydantic).

``params.yaml`` is the one place where defaults live: the models below declare types and ranges
but no default values (a missing key is an error that says so), so the file and the typed view
cannot drift apart. A bad value is reported once, with the key that holds it and a valid
alternative, before any work (or teacher query) is done.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from pipeline.distill.terms import TERMS
from pipeline.errors import ParamsError

Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]

BUILT_TEACHERS = ("train", "cirtorch", "torchvision", "efficientnet-lite")  # weights on this machine
QUERIED_TEACHERS = ("mlflow", "kserve-v2", "command", "precomputed")  # reachable only by queries
FASHION_MNIST_DIR = "data/raw/fashion-mnist"  # where the fetch stage puts it
POOL_SIZES = {"fashion-mnist": 60000}  # pools whose size is known before they are prepared


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    dataset: Literal["fashion-mnist", "folder", "sfm120k"]
    raw_dir: str
    test: Literal["split", "roxford5k", "rparis6k", "revisited"]
    test_dir: str
    distractors: Annotated[int, Field(ge=0, le=100)]
    mirror: str
    pool_limit: NonNegative  # 0 = the whole pool; else its first N images (quick trials, tests)
    test_limit: NonNegative  # 0 = the whole test set; else its first N images before the split
    n_queries: Positive
    split_seed: int
    test_fraction: Annotated[float, Field(gt=0, lt=1)]
    image_size: Positive
    on_bad_image: Literal["stop", "skip"]


class SampleParams(Section):
    seed: int
    val_size: NonNegative
    val_queries: Positive
    strategy: Literal["random", "typical"]  # which B pool images to ask about (never by labels or the teacher)
    features: str  # typical: "pixels", or a size of `sizes` (its label-free pretraining)
    neighbours: Literal["auto", "exact", "approximate"]  # typical: how each image's nearest neighbours are found


class PretrainParams(Section):
    """Label-free pretraining of each student size on the unqueried pool (a method's ``pool: pretrain``)."""

    steps: NonNegative
    batch_size: Annotated[int, Field(ge=2)]
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    temperature: PositiveFloat
    seed: int
    min_scale: Annotated[float, Field(gt=0, le=1)]  # smallest crop area of a view


class TeacherParams(Section):
    kind: Literal[
        "train", "cirtorch", "torchvision", "efficientnet-lite", "mlflow", "kserve-v2", "command", "precomputed"
    ]
    # teachers built here (their weights on this machine)
    weights: str
    sha256: str
    image_size: Positive
    scales: Annotated[tuple[PositiveFloat, ...], Field(min_length=1)]
    whitening: bool
    arch: str
    dim: Positive
    epochs: Positive
    batch_size: Positive
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    scale: PositiveFloat
    margin: NonNegativeFloat
    train_images: NonNegative
    seed: int
    # teachers reachable only by queries
    url: str
    model: str
    command: str
    descriptors: str
    auth_env: str
    auth_header: str

    @property
    def queried(self) -> bool:
        return self.kind in QUERIED_TEACHERS


class QueriesParams(Section):
    """How teacher calls are made. Not a stage dependency: answers are keyed by the teacher and the
    exact input, so none of these can change a result."""

    store: str
    call_batch: Positive
    extra_calls: NonNegative
    timeout_s: PositiveFloat
    retries: NonNegative
    max_backoff_s: PositiveFloat  # waits between attempts double from 0.5 s up to this
    max_qps: NonNegativeFloat
    verify: NonNegative

    def store_root(self) -> Path:
        return Path(os.path.expandvars(os.path.expanduser(self.store)))


class StudentParams(Section):
    arch: str
    dim: Positive
    weights: str


class AugmentParams(Section):
    ratio: NonNegativeFloat
    alpha: PositiveFloat
    pairing: Literal["random", "knn"]
    knn: Positive


class TrainParams(Section):
    """The schedule every method shares (a method may override ``steps`` and ``lr``)."""

    steps: Positive
    batch_size: Positive
    virtual_per_batch: NonNegative
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    log_every: Positive


LEVERS = ("nopool", "random")  # the recommended method without one lever: no pool pretraining; a random subset
LABEL_LOSSES = tuple(name for name, term in TERMS.items() if term.reads_labels)  # the supervised baseline's terms


class _LossTermsBase(Section):
    def items(self) -> list[tuple[str, BaseModel]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields if getattr(self, name) is not None]

    def __contains__(self, name: str) -> bool:
        return getattr(self, name, None) is not None


# A method is a weighted sum of loss terms (pytorch-metric-learning style), each registered once in
# pipeline/distill/terms.py with its knobs.
LossTerms = create_model(
    "LossTerms",
    __base__=_LossTermsBase,
    __doc__="The terms a method sums, each with its knobs; an absent term is not used. Terms are summed in "
    "registration order.",
    **{name: (term.knobs | None, None) for name, term in TERMS.items()},
)


class MethodParams(Section):
    """One way of training the student: which virtual samples it sees and which loss terms it sums."""

    space: Literal["representation", "input", "none"]
    losses: LossTerms
    flip_shift: bool  # random flips and 2-pixel shifts of real images (label-preserving)
    pool: Literal["none", "pretrain"]  # pretrain: start from the size's label-free pretraining on the whole pool
    steps: Positive | None = None  # absent: train.steps (an override, not a default)
    lr: PositiveFloat | None = None  # absent: train.lr

    @field_validator("losses")
    @classmethod
    def _some_term(cls, terms: LossTerms) -> LossTerms:
        if not terms.items():
            raise ValueError(f"must name at least one loss term ({', '.join(LossTerms.model_fields)})")
        return terms

    def schedule(self, train: "TrainParams") -> tuple[int, float]:
        """(steps, lr): this method's own override, else the shared ``train`` value."""
        return (self.steps or train.steps, self.lr or train.lr)

    @property
    def uses_labels(self) -> bool:
        return any(name in LABEL_LOSSES for name, _ in self.losses.items())

    @property
    def uses_teacher(self) -> bool:
        return any(name not in LABEL_LOSSES for name, _ in self.losses.items())

    def as_dict(self) -> dict:
        return {
            "space": self.space,
            "steps": self.steps or 0,
            "lr": self.lr or 0.0,
            "flip_shift": self.flip_shift,
            "pool": self.pool,
            "losses": {name: knobs.model_dump() for name, knobs in self.losses.items()},
        }


class EvalParams(Section):
    kappas: Annotated[tuple[Positive, ...], Field(min_length=1)]
    batch_size: Positive
    index: Literal["exact", "ivfpq"]  # ivfpq: approximate top-k from a compressed index (R1M-size databases)
    top_k: Positive  # ivfpq: results per query (a positive beyond them is not retrieved)
    ivf_lists: Positive
    pq_m: Positive  # sub-quantisers (must divide the descriptor size)
    nprobe: Positive
    recall_queries: Positive  # ivfpq: queries its recall against exact search is measured on


class RuntimeParams(Section):
    device: Literal["auto", "cpu", "cuda"]
    threads: NonNegative
    students_at_once: NonNegative  # a training stage's seeds trained (and students evaluated) side by side (0: all)
    checkpoint_every: Positive
    processes: Positive  # > 1: training and teacher description run under torchrun with this many ranks
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    compile: Literal["auto", "true", "false"]


class FullParams(Section):
    """The paper's full-supervision baseline: the same student trained on every labelled pool image
    (the validation split left out), no teacher."""

    method: str  # a label method of `method` (its loss terms)
    steps: Positive


class CeilingParams(Section):
    """The distillation ceiling: the recommended method with every training-pool image answered."""

    run: Literal["auto", "true", "false"]  # auto: only for a teacher built here
    steps: Positive
    seeds: Annotated[tuple[NonNegative, ...], Field(min_length=1)]  # a reference row, read by no claim


class LeversParams(Section):
    """The budgets at which the recommended method is also trained without each lever (claims g, h)."""

    budgets: tuple[Positive, ...]


class Params(Section):
    budgets: Annotated[tuple[Positive, ...], Field(min_length=1)]
    methods: Annotated[tuple[str, ...], Field(min_length=1)]
    recommended: str
    seeds: Annotated[tuple[NonNegative, ...], Field(min_length=1)]
    student: str
    sizes: Annotated[tuple[str, ...], Field(min_length=1)]
    students: dict[str, StudentParams]
    full: FullParams
    ceiling: CeilingParams
    levers: LeversParams
    data: DataParams
    sample: SampleParams
    pretrain: PretrainParams
    teacher: TeacherParams
    queries: QueriesParams
    augment: AugmentParams
    train: TrainParams
    method: dict[str, MethodParams]
    eval: EvalParams
    runtime: RuntimeParams

    @property
    def max_budget(self) -> int:
        return max(self.budgets)

    def size(self, name: str | None = None) -> StudentParams:
        """A student size's settings (default: the size every method is compared at)."""
        return self.students[name or self.student]

    @property
    def all_sizes(self) -> tuple[str, ...]:
        """Every size a run trains: the frontier's, and the comparison's."""
        return tuple(dict.fromkeys((*self.sizes, self.student)))


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: tuple) -> Any:
    """The params model that the location ``loc`` holds (None where it holds a plain value)."""
    model: Any = Params
    in_dict = False
    for part in loc:
        if in_dict:  # a key of a dict of models (a method's name)
            in_dict = False
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if typing.get_origin(ann) is dict:
            model, in_dict = args[1], True
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            model = args[0]
        else:
            return None
    return None if in_dict else model


def _message(err: dict) -> str:
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
    where = _where(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = list(parent.model_fields) if parent is not None else []
        return f"unknown key '{where}'" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"'{where}' must be a mapping of its keys, got {err.get('input')!r}"
    if kind == "missing":
        return (
            f"'{where}' is missing: every key must be set (the repository's params.yaml lists each one "
            "with its default value)"
        )
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    return f"'{where}': {msg[0].lower() + msg[1:]}" + ("" if isinstance(got, dict) else f", got {got!r}")


def parse_params(raw: Any) -> Params:
    """Validated params from a parsed params.yaml: field types and ranges, then combinations."""
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping of sections (budgets, data, teacher, ...)")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # a list with a bad item is not also "too short": report the item only
        errors = [
            e
            for e in errors
            if not (
                e["type"] == "too_short"
                and any(o is not e and tuple(o["loc"][: len(e["loc"])]) == tuple(e["loc"]) for o in errors)
            )
        ]
        lines = [_message(e) for e in errors]
        raise ParamsError("params.yaml is invalid:\n  - " + "\n  - ".join(lines)) from None
    return validate(params)


def validate(p: Params, pool_size: int | None = None) -> Params:
    """Combinations that cannot work. ``pool_size`` (when the pool is prepared) bounds the budgets;
    pools of a known size are checked without it. Model names are checked by the stages that build
    models (:func:`pipeline.models.registry.check_names`), so that stages which never build one do
    not depend on the model code."""
    errors = []
    if len(set(p.budgets)) != len(p.budgets):
        errors.append(f"'budgets' has duplicates: {list(p.budgets)}; list each budget once")
    d = p.data
    size = pool_size or (
        min(POOL_SIZES[d.dataset], d.pool_limit or POOL_SIZES[d.dataset]) if d.dataset in POOL_SIZES else None
    )
    if size is not None and p.max_budget > size - p.sample.val_size:
        fixes = []
        if size - p.max_budget > p.sample.val_queries:  # a smaller validation split leaves room for the budgets
            fixes.append(f"sample.val_size <= {size - p.max_budget}")
        if size - p.sample.val_size > 0:
            fixes.append(f"budgets <= {size - p.sample.val_size}")
        errors.append(
            f"'budgets' max {p.max_budget} exceeds the training pool of {size} images less the "
            f"{p.sample.val_size} held out for validation (sample.val_size); use "
            + (
                " or ".join(fixes)
                if fixes
                else f"a larger pool, or both smaller budgets and sample.val_size "
                f"(e.g. sample.val_size: {max(size // 10, p.sample.val_queries + 1)})"
            )
        )
    if p.sample.val_size < 2:
        errors.append(
            f"'sample.val_size' must be at least 2 (its queries and a database to search), got "
            f"{p.sample.val_size}; e.g. sample.val_size: 5000, or 10% of a small pool"
        )
    elif not p.sample.val_queries < p.sample.val_size:
        errors.append(
            f"'sample.val_queries' must be between 1 and sample.val_size - 1 ({p.sample.val_size - 1}), got "
            f"{p.sample.val_queries}; e.g. sample.val_queries: {max(p.sample.val_size // 10, 1)}"
        )
    if p.sample.features != "pixels" and p.sample.features not in p.sizes:
        errors.append(
            "'sample.features' must be pixels or a student size of 'sizes' (its pretraining embeds the "
            f"pool), got {p.sample.features!r}; choose from pixels, {', '.join(p.sizes)}"
        )
    for b in p.levers.budgets:
        if b not in p.budgets:
            errors.append(
                f"'levers.budgets' lists {b}, which is not in 'budgets' {list(p.budgets)}; "
                f"choose from those (e.g. the two smallest, {sorted(p.budgets)[:2]})"
            )
    if len(set(p.seeds)) != len(p.seeds):
        errors.append(f"'seeds' must be distinct, got {list(p.seeds)}")
    if len(set(p.methods)) != len(p.methods):
        errors.append(f"'methods' has duplicates: {list(p.methods)}; list each method once")
    for name in p.methods:
        if name not in p.method:
            errors.append(
                f"'methods' lists {name!r}, which has no settings under 'method'; "
                f"define it there or choose from {', '.join(p.method)}"
            )
    if p.recommended not in p.method:
        errors.append(
            f"'recommended' = {p.recommended!r} has no settings under 'method'; choose from {', '.join(p.method)}"
        )
    if p.recommended in p.methods:
        errors.append(
            f"'methods' lists the recommended method {p.recommended!r}: it is trained at every size of "
            "'sizes' already (the frontier); list only the methods to compare it with"
        )
    for key, names in (("student", (p.student,)), ("sizes", p.sizes)):
        for name in names:
            if name not in p.students:
                errors.append(
                    f"'{key}' names the student size {name!r}, which 'students' does not define; "
                    f"choose from {', '.join(p.students)}"
                )
    if p.student not in p.sizes:
        errors.append(
            f"'sizes' must include the compared size 'student' ({p.student!r}): the recommended method's "
            "row of the table comes from the frontier"
        )
    if len(set(p.sizes)) != len(p.sizes):
        errors.append(f"'sizes' has duplicates: {list(p.sizes)}")
    if p.full.method not in p.method or not p.method[p.full.method].uses_labels:
        errors.append(
            f"'full.method' must name a method that learns from labels (e.g. supervised), got {p.full.method!r}"
        )
    for name, m in p.method.items():
        if m.uses_labels and m.space != "none":
            errors.append(f"'method.{name}.space' must be none: label losses have no labels for virtual samples")
    if d.dataset == "fashion-mnist" and d.raw_dir != FASHION_MNIST_DIR:
        errors.append(
            f"'data.raw_dir' must be {FASHION_MNIST_DIR} for the fashion-mnist dataset (the fetch "
            f"stage puts it there), got {d.raw_dir!r}"
        )
    if d.dataset == "sfm120k" and d.test == "split":
        errors.append(
            "'data.test' must name a test set (roxford5k, rparis6k or revisited) for the sfm120k pool, "
            "which has no test split of its own"
        )
    if d.dataset == "fashion-mnist" and d.test != "split":
        errors.append(
            "'data.test' must be split for the fashion-mnist pool (greyscale 28x28 images cannot be "
            "tested on photos); use a folder or sfm120k pool for a photo test set"
        )
    if d.test == "revisited" and not d.test_dir:
        errors.append("'data.test_dir' must name your folder (gnd_<name>.pkl + jpg/) when data.test is revisited")
    if d.distractors and d.test not in ("roxford5k", "rparis6k"):
        errors.append("'data.distractors' adds R1M to roxford5k or rparis6k only; set it to 0")
    if d.test == "split" and d.test_limit and not d.n_queries < d.test_limit:
        errors.append(
            f"'data.n_queries' ({d.n_queries}) must be smaller than data.test_limit ({d.test_limit}): "
            "the rest of the test images are the database"
        )
    if p.eval.index == "ivfpq":  # every descriptor it indexes: each student size's, and the teacher's where
        # params.yaml fixes it (a published teacher's comes from its weights: the evaluation checks that one)
        published = p.teacher.kind in BUILT_TEACHERS and p.teacher.kind != "train"
        dims = sorted(
            {*(() if published else (p.teacher.dim,)), *(p.students[n].dim for n in p.sizes if n in p.students)}
        )
        if any(dim % p.eval.pq_m for dim in dims):
            fits = [m for m in range(1, min(dims) + 1) if all(dim % m == 0 for dim in dims)]
            errors.append(
                f"'eval.pq_m' = {p.eval.pq_m} must divide every descriptor size the index holds ({dims}); "
                f"choose one of {fits[-4:]}"
            )
    errors += _teacher_errors(p)
    for name, sp in p.students.items():
        if sp.weights and not sp.arch.startswith("gem_"):
            errors.append(
                f"'students.{name}.weights' initialises a gem_<backbone> student, not {sp.arch!r}; "
                "leave it empty or choose e.g. arch: gem_resnet18"
            )
    if errors:
        raise ParamsError("params.yaml is invalid:\n  - " + "\n  - ".join(errors))
    return p


def _teacher_errors(p: Params) -> list[str]:
    t, d = p.teacher, p.data
    errors = []
    photo_pool = d.dataset == "sfm120k" or (d.dataset == "folder" and d.test != "split")
    if t.kind == "train" and photo_pool:
        errors.append(
            "'teacher.kind' train learns a small CNN on an array pool and cannot read the photo pool of "
            f"data.dataset {d.dataset!r} with data.test {d.test!r}; choose a published teacher (cirtorch, "
            "torchvision, efficientnet-lite) or one you can only query (mlflow, kserve-v2, command, "
            "precomputed)"
        )
    if t.kind in ("cirtorch", "torchvision") and not t.weights:
        errors.append(
            f"'teacher.weights' must give the URL or path of the {t.kind} weights "
            "(torchvision: 'none' for random weights, smoke tests only)"
        )
    need = {
        "mlflow": ("url", "the server's base URL, e.g. http://127.0.0.1:5001 (see `derd serve-teacher`)"),
        "kserve-v2": ("url", "the server's base URL, e.g. http://127.0.0.1:8080"),
        "command": ("command", "the program to run, e.g. python my_teacher.py {input} {output}"),
        "precomputed": ("descriptors", "an .npz file with 'names' and 'descriptors'"),
    }
    if t.kind in need and not getattr(t, need[t.kind][0]):
        key, example = need[t.kind]
        errors.append(f"'teacher.{key}' must be set for teacher.kind {t.kind}: {example}")
    if t.kind == "kserve-v2" and not t.model:
        errors.append(
            "'teacher.model' must name the served model for teacher.kind kserve-v2 "
            "(the <name> in /v2/models/<name>/infer)"
        )
    if t.url and not t.url.startswith(("http://", "https://")):
        errors.append(f"'teacher.url' must start with http:// or https://, got {t.url!r}")
    if t.auth_env and not t.auth_header:
        errors.append("'teacher.auth_header' must name the header that carries the key (e.g. Authorization)")
    return errors


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run the stage from the repository root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_params(raw)
    except ParamsError as exc:
        raise ParamsError(str(exc).replace("params.yaml", str(path), 1)) from None
