"""dump: teacher descriptors of the largest subset, through the budgeted gate.

The answers live in the teacher's store (``queries.store``, outside the DVC workspace), keyed by the
exact pixels sent, so a rerun after any parameter change, in any DVC experiment, sends the teacher
only images it has never answered; the budget bounds the images sent for this subset.
"""

from pathlib import Path

import click

from stages.common import params_option, path_option, progress, setup, stage


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
    from pipeline.distill.sampling import nested_subsets
    from pipeline.io import save_npz_atomic, write_json_atomic
    from pipeline.teacher.blackbox import open_teacher
    from pipeline.teacher.inputs import pool_inputs

    params, device = setup(params_path)
    distributed.relaunch(params.runtime.processes)  # under torchrun when runtime.processes > 1
    device = distributed.start(device)
    subset = nested_subsets(subsets, params.budgets)[params.max_budget]
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
