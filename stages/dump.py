"""dump: teacher descriptors of the largest subset, through the budgeted gate.

The answers live in the teacher's store (``queries.store``, outside the DVC workspace), keyed by the
exact pixels sent, so a rerun after any parameter change, in any DVC experiment, sends the teacher
only images it has never answered; the budget bounds the images sent for this subset.
"""

from pathlib import Path

import click
import numpy as np

from stages.common import params_option, path_option, progress, setup, stage


def load_subsets(folder: Path, budgets) -> dict[int, np.ndarray]:
    from pipeline.errors import ArtifactError

    subsets = {}
    for b in budgets:
        path = folder / f"{b}.npy"
        if not path.exists():
            raise ArtifactError(f"{path} not found: run `dvc repro sample` first")
        subsets[b] = np.load(path)
    largest = subsets[max(budgets)]
    for b, s in subsets.items():
        if not np.array_equal(s, largest[: len(s)]):
            raise ArtifactError(
                f"{folder / f'{b}.npy'} is not a prefix of the largest subset: rerun `dvc repro -f sample`"
            )
    return subsets


def pool_inputs(prepared: Path, subset: np.ndarray):
    """The subset's images as the teacher receives them, with their names."""
    from pipeline.data import prepared as prepared_data
    from pipeline.teacher.inputs import TeacherInputs

    pool, names = prepared_data.pool_images(prepared), prepared_data.pool_names(prepared)
    images = pool[subset] if isinstance(pool, np.ndarray) else pool.take(subset)
    return TeacherInputs(images, [names[i] for i in subset])


@click.command()
@params_option
@path_option("--teacher", help="the teacher's folder (card.json)")
@path_option("--prepared", help="the prepared dataset")
@path_option("--subsets", help="the folder of subset files (<budget>.npy)")
@path_option("--out", help="the descriptors .npz")
@path_option("--metrics", help="the query accounting JSON")
@stage
def dump(params_path: Path, teacher: Path, prepared: Path, subsets: Path, out: Path, metrics: Path):
    from pipeline import distributed
    from pipeline.io import save_npz_atomic, write_json_atomic
    from pipeline.teacher.blackbox import open_teacher

    params, device = setup(params_path)
    distributed.relaunch(params.runtime.processes)  # under torchrun when runtime.processes > 1
    device = distributed.start(device)
    subset = load_subsets(subsets, params.budgets)[params.max_budget]
    access = open_teacher(teacher, params.queries, device)
    if access is None:  # another rank: it described its share of rank 0's calls
        return distributed.stop()
    bar = progress(len(subset), "teacher queries")
    descriptors, stats = access.describe(pool_inputs(prepared, subset), "train", params.max_budget, bar.update)
    bar.close()
    save_npz_atomic(out, indices=subset, descriptors=descriptors)
    write_json_atomic(metrics, {"train_queries": stats["spent"], "budget": params.max_budget, **stats})
    click.echo(
        f"teacher queries: {stats['sent']} sent this run, {stats['spent']} for these {len(subset)} images in "
        f"total (budget {params.max_budget}); "
        + (f"ledger: {access.store.ledger_path}" if access.store else "precomputed: nothing sent")
    )
    distributed.stop()


if __name__ == "__main__":
    dump()
