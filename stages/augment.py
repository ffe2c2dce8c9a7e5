"""augment@B-seed: the B-subset's teacher targets, plus virtual triples ``(i, j, lam)`` over it and
their interpolated targets. No teacher query: targets come from the dump.

This per-budget file is all that training reads of the teacher, so a larger dump (a new largest
budget) does not retrain the students of the smaller budgets: their file comes out byte-identical."""
from pathlib import Path

import click
import numpy as np

from stages.common import load, params_option, path_option, stage


def subset_targets(subset_path: Path, dump_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The subset's pool indices and teacher descriptors (the first B rows of the dump)."""
    from pipeline.errors import ArtifactError

    subset = np.load(subset_path)
    with np.load(dump_path) as z:
        indices, descriptors = z["indices"], z["descriptors"]
    if not np.array_equal(indices[:len(subset)], subset):
        raise ArtifactError(f"{dump_path} does not start with the subset {subset_path}: rerun `dvc repro dump`")
    return subset, descriptors[:len(subset)]


@click.command()
@click.option("--budget", type=int, required=True)
@click.option("--seed", type=int, required=True, help="one of params.yaml's seeds")
@params_option
@path_option("--subset", help="the budget's subset .npy")
@path_option("--dump", "dump_path", help="the teacher's descriptors of the largest subset")
@path_option("--out", help="the augmented set .npz")
@stage
def augment(budget: int, seed: int, params_path: Path, subset: Path, dump_path: Path, out: Path):
    from pipeline.distill.interpolation import virtual_samples
    from pipeline.io import save_npz_atomic

    params = load(params_path)
    _, targets = subset_targets(subset, dump_path)
    a = params.augment
    triples, virtual_targets = virtual_samples(targets, a.ratio, a.alpha, a.pairing, a.knn, seed, budget)
    save_npz_atomic(out, real_targets=targets, i=triples.i, j=triples.j, lam=triples.lam, targets=virtual_targets)
    click.echo(f"{len(triples)} virtual samples for {budget} real ones (pairing {a.pairing}, alpha {a.alpha})")


if __name__ == "__main__":
    augment()
