"""augment@B-seed: the B-subset's teacher targets, plus virtual triples ``(i, j, lam)`` over it and
their interpolated targets. No teacher query: targets come from the dump.

This per-budget file is all that training reads of the teacher, so a larger dump (a new largest
budget) does not retrain the students of the smaller budgets: their file comes out byte-identical."""
import click
import numpy as np

from stages.common import ROOT, load, stage


def subset_targets(budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The B-subset's pool indices and teacher descriptors (the first B rows of the dump)."""
    subset = np.load(ROOT / f"data/subsets/{budget}.npy")
    with np.load(ROOT / "data/teacher/train_descriptors.npz") as z:
        indices, descriptors = z["indices"], z["descriptors"]
    if not np.array_equal(indices[:budget], subset):
        raise ValueError(f"the teacher dump does not start with the {budget}-subset: rerun `dvc repro dump`")
    return subset, descriptors[:budget]


@click.command()
@click.option("--budget", type=int, required=True)
@click.option("--seed", type=int, required=True, help="one of params.yaml's seeds")
@stage
def augment(budget: int, seed: int):
    from pipeline.distill.interpolation import virtual_samples
    from pipeline.io import save_npz_atomic

    params = load()
    _, targets = subset_targets(budget)
    a = params.augment
    triples, virtual_targets = virtual_samples(targets, a.ratio, a.alpha, a.pairing, a.knn, seed, budget)
    save_npz_atomic(ROOT / f"data/augmented/{budget}-{seed}.npz", real_targets=targets, i=triples.i, j=triples.j,
                    lam=triples.lam, targets=virtual_targets)
    click.echo(f"{len(triples)} virtual samples for {budget} real ones (pairing {a.pairing}, alpha {a.alpha})")


if __name__ == "__main__":
    augment()
