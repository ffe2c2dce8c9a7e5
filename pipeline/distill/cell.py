"""One student to train (a cell): a budget's cell (budget x method x size x seed, or a lever's), the
full-supervision baseline, or the distillation ceiling. What it learns from, the method as it is
trained, and its run parameters: what its MLflow run shows, hashed with its input files into the
key of its resumable checkpoint (:func:`pipeline.checkpoint.inputs_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.distill.train import TrainingData
from pipeline.errors import ArtifactError, ParamsError
from pipeline.params import MethodParams, Params, StudentParams


@dataclass(frozen=True)
class Cell:
    """A budget's cell (``budget``), the full-supervision baseline (``full``) or the ceiling (``ceiling``);
    ``lever`` nopool or random: the method without one lever."""

    budget: int | None
    full: bool
    ceiling: bool
    lever: str | None
    method: str
    size: str
    seed: int

    @property
    def label(self) -> str:
        """The method as reports name it: supervised-full, <method>-ceiling, <method>-<lever> or <method>."""
        if self.full:
            return "supervised-full"
        if self.ceiling:
            return f"{self.method}-ceiling"
        return f"{self.method}-{self.lever}" if self.lever else self.method

    def check(self, params: Params) -> None:
        """A cell that params.yaml does not define is a mistake worth naming."""
        budget = None if self.full or self.ceiling else self.budget
        if budget is not None and budget not in params.budgets:
            raise ParamsError(f"budget {budget} is not in params.yaml's budgets {list(params.budgets)}")
        if self.method not in params.method:
            raise ParamsError(
                f"method {self.method!r} has no settings under 'method'; choose from {', '.join(params.method)}"
            )
        if self.size not in params.students:
            raise ParamsError(
                f"student size {self.size!r} is not under 'students'; choose from {', '.join(params.students)}"
            )
        seeds_key, seeds = ("ceiling.seeds", params.ceiling.seeds) if self.ceiling else ("seeds", params.seeds)
        if self.seed not in seeds:
            raise ParamsError(f"seed {self.seed} is not in params.yaml's {seeds_key} {list(seeds)}")
        if sum([self.full, self.ceiling, self.budget is not None]) != 1:
            raise ParamsError("give exactly one of --full, --ceiling or --budget")

    def method_params(self, params: Params) -> MethodParams:
        """The method as this cell trains it: without pool pretraining for the nopool lever; with
        ``full.steps`` or ``ceiling.steps`` for the baseline and the ceiling."""
        m = params.method[self.method]
        if self.lever == "nopool":
            m = m.model_copy(update={"pool": "none"})
        if self.full:
            m = m.model_copy(update={"steps": params.full.steps})
        elif self.ceiling:
            m = m.model_copy(update={"steps": params.ceiling.steps})
        return m


def check_inputs(cell: Cell, subset: Path | None, augmented: Path | None, targets: Path | None) -> None:
    """The files a cell of its kind needs were named."""
    if cell.budget is not None and (subset is None or (augmented is None) == (targets is None)):
        raise ParamsError("--budget needs --subset and one of --augmented or --targets")
    if cell.ceiling and targets is None:
        raise ParamsError("--ceiling needs --targets (the teacher's answers for the whole training pool)")


@dataclass(frozen=True)
class CellInputs:
    indices: np.ndarray  # the pool images the student sees
    data: TrainingData  # their pixels and, per method, teacher answers and virtual samples, or labels
    files: list[Path]  # every file read: their bytes are part of the checkpoint key
    pool_size: int


def training_inputs(
    cell: Cell,
    m: MethodParams,
    params: Params,
    prepared: Path,
    subset: Path | None,
    augmented: Path | None,
    targets: Path | None,
    pretrained: Path,
) -> CellInputs:
    """What the student of ``cell`` (trained by ``m``, see :meth:`Cell.method_params`) learns from:

    - the baseline: every training-pool image (the validation split left out) with its label;
    - ``augmented``: the budget's subset with its stored answers and virtual samples (the augment stage);
    - ``targets``: answers read by pool index (the ceiling: the whole training pool; a lever's random
      subset), virtual samples drawn here as the augment stage would.

    ``pretrained`` (the size's pool pretraining) is read, and so keyed, when ``m`` sets pool: pretrain.
    """
    from pipeline.data import prepared as prepared_data
    from pipeline.data.images import student_arrays
    from pipeline.distill.interpolation import Triples, virtual_samples
    from pipeline.distill.sampling import training_pool

    pool_size = prepared_data.pool_meta(prepared)["pool_size"]
    pool = prepared_data.pool_images(prepared)
    files = [prepared / "pool.npz", prepared / "pool.json"]
    if cell.full:
        indices = training_pool(pool_size, params.sample.val_size, params.sample.seed)
        answers = triples = virtual_targets = None
    elif augmented is not None:
        indices = np.load(subset)
        with np.load(augmented) as z:
            answers, triples, virtual_targets = z["real_targets"], Triples(z["i"], z["j"], z["lam"]), z["targets"]
        files += [subset, augmented]
    else:
        from pipeline.distill.ceiling import answers_for

        indices = (
            training_pool(pool_size, params.sample.val_size, params.sample.seed) if cell.ceiling else np.load(subset)
        )
        answers = answers_for(targets, indices)
        a = params.augment
        triples, virtual_targets = virtual_samples(answers, a.ratio, a.alpha, a.pairing, a.knn, cell.seed, len(indices))
        files += [targets] + ([subset] if subset is not None else [])
    data = TrainingData.for_method(
        m,
        student_arrays(pool, params.data.image_size, indices),
        answers,
        triples,
        virtual_targets,
        lambda: prepared_data.pool_labels(prepared)[indices],
    )
    if m.pool == "pretrain":
        files.append(pretrained)
    return CellInputs(indices, data, files, pool_size)


def run_params(cell: Cell, m: MethodParams, params: Params, inputs: CellInputs) -> dict:
    """What the student's MLflow run shows as its params; with the input files, its checkpoint key."""
    steps, lr = m.schedule(params.train)
    virtual = m.space != "none" and inputs.data.triples is not None
    n = len(inputs.indices)
    return {
        "budget": "all" if cell.full else "pool" if cell.ceiling else cell.budget,
        "teacher_queries": cell.budget if m.uses_teacher and cell.budget is not None else n if cell.ceiling else 0,
        "train_images": n,
        "pool_fraction": n / inputs.pool_size,
        "method": cell.label,
        "seed": cell.seed,
        "uses_labels": m.uses_labels,
        "size": cell.size,
        "image_size": params.data.image_size,
        "student": params.size(cell.size).model_dump(),
        "train": params.train.model_dump(),
        "schedule": {"steps": steps, "lr": lr},
        "method_params": m.as_dict(),
        "pretrain": params.pretrain.model_dump() if m.pool == "pretrain" else {},
        "subset": "random" if cell.lever == "random" else params.sample.strategy if cell.budget is not None else "all",
        "augment": params.augment.model_dump() if virtual else {},
        "virtual_samples": len(inputs.data.triples) if virtual else 0,
    }


def pretrained_init(path: Path, sp: StudentParams):
    """Loads the size's pretrained weights into a fresh student; refuses a file of another size."""
    import torch

    if not path.exists():
        raise ArtifactError(f"{path} not found: run `dvc repro pretrain` (the method sets pool: pretrain)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if (ckpt["arch"], ckpt["dim"]) != (sp.arch, sp.dim):
        raise ArtifactError(
            f"{path} holds a {ckpt['arch']}-{ckpt['dim']}d student, not {sp.arch}-{sp.dim}d: rerun `dvc repro pretrain`"
        )
    return lambda model: model.load_state_dict(ckpt["state_dict"])


def fetch_weights(m: MethodParams, sp: StudentParams, downloads: Path) -> None:
    """Download the size's published trunk weights that :func:`initial_weights` will read, if any, on
    one rank: before a stage's students start side by side, so that they do not download one file at
    once."""
    from pipeline import distributed
    from pipeline.models.weights import weights_file

    if m.pool != "pretrain" and sp.weights and sp.weights != "efficientnet-lite" and distributed.world()[0] == 0:
        weights_file(sp.weights, downloads, "")
    distributed.barrier()


def initial_weights(m: MethodParams, sp: StudentParams, pretrained: Path, downloads: Path):
    """What the fresh student starts from: the size's pool pretraining (which already holds any trunk
    weights) when ``m`` sets pool: pretrain, else the size's published trunk weights, if any (one
    rank downloads them; the others read them once it is done)."""
    from pipeline import distributed
    from pipeline.models.weights import trunk_init

    if m.pool == "pretrain":
        return pretrained_init(pretrained, sp)
    rank = distributed.world()[0]
    init = trunk_init(sp.arch, sp.weights, downloads) if rank == 0 else None
    distributed.barrier()
    return init if rank == 0 else trunk_init(sp.arch, sp.weights, downloads)
