"""augment: for every budget B and seed, ``<B>/<seed>.npz``: the B-subset's teacher targets, plus
virtual triples ``(i, j, lam)`` over it and their interpolated targets. No teacher query: targets
come from the dump. One process for every cell (each takes well under a second; a process start-up
takes seconds).

These files are all that training reads of the teacher, one folder per budget (each budget's training
stages depend on their folder), so a larger dump (a new largest budget) does not retrain the students
of the other budgets: their files come out byte-identical."""

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
    if not np.array_equal(indices[: len(subset)], subset):
        raise ArtifactError(f"{dump_path} does not start with the subset {subset_path}: rerun `dvc repro dump`")
    return subset, descriptors[: len(subset)]


@click.command()
@params_option
@path_option("--subsets", help="the budgets' subsets folder (<B>.npy)")
@path_option("--dump", "dump_path", help="the teacher's descriptors of the largest subset")
@path_option("--out", help="the augmented sets' folder")
@stage
def augment(params_path: Path, subsets: Path, dump_path: Path, out: Path):
    from pipeline.distill.interpolation import virtual_samples
    from pipeline.grid import augmented_path
    from pipeline.io import save_npz_atomic

    params = load(params_path)
    a = params.augment
    for budget in params.budgets:
        (out / str(budget)).mkdir(parents=True, exist_ok=True)
        _, targets = subset_targets(subsets / f"{budget}.npy", dump_path)
        for seed in params.seeds:
            triples, virtual_targets = virtual_samples(targets, a.ratio, a.alpha, a.pairing, a.knn, seed, budget)
            save_npz_atomic(
                augmented_path(out / str(budget), seed),
                real_targets=targets,
                i=triples.i,
                j=triples.j,
                lam=triples.lam,
                targets=virtual_targets,
            )
        click.echo(
            f"B={budget}: {len(triples)} virtual samples for {budget} real ones, for each of "
            f"{len(params.seeds)} seeds (pairing {a.pairing}, alpha {a.alpha})"
        )


if __name__ == "__main__":
    augment()
