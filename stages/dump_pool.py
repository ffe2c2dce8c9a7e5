"""dump-pool: the teacher's answers for every training-pool image, for the distillation ceiling (and
the random subsets of the "selection beats random" claim). Runs after the budget's dump, so the
ledger's training purpose shows exactly max(budgets) images; these calls carry the purpose "ceiling".

``ceiling.run``: auto asks only a teacher built here; a served or command teacher is asked only with
``true``, after its cost in queries is printed. Skipped, the file holds no answers and says why.
"""

from pathlib import Path

import click
import numpy as np

from stages.common import params_option, path_option, progress, setup, stage


@click.command()
@params_option
@path_option("--teacher", help="the teacher's folder (card.json)")
@path_option("--prepared", help="the prepared dataset")
@path_option("--after", help="the budget's dump (this stage runs after it)")
@path_option("--out", help="the pool's descriptors .npz")
@stage
def dump_pool(params_path: Path, teacher: Path, prepared: Path, after: Path, out: Path):
    from pipeline import distributed
    from pipeline.data import prepared as prepared_data
    from pipeline.distill.ceiling import PURPOSE, enabled
    from pipeline.distill.sampling import training_pool
    from pipeline.io import save_npz_atomic
    from pipeline.teacher.blackbox import open_teacher, read_card
    from pipeline.teacher.inputs import pool_inputs

    params, device = setup(params_path)
    card = read_card(teacher)
    queried = params.teacher.queried
    if not enabled(params.ceiling.run, queried):
        reason = f"ceiling.run is {params.ceiling.run}" + (
            " and the teacher is reached only by queries (each one "
            "may cost): set ceiling.run: true to ask it about the whole training pool"
            if queried
            else ""
        )
        save_npz_atomic(
            out,
            indices=np.zeros(0, np.int64),
            descriptors=np.zeros((0, card["dim"]), np.float32),
            skipped=np.array(reason),
        )
        return click.echo(f"distillation ceiling skipped: {reason}")
    distributed.relaunch(params.runtime.processes)
    device = distributed.start(device)
    pool_size = prepared_data.pool_meta(prepared)["pool_size"]
    indices = training_pool(pool_size, params.sample.val_size, params.sample.seed)
    access = open_teacher(teacher, params.queries, device)
    if access is None:  # another rank: it described its share of rank 0's calls
        return distributed.stop()
    click.echo(
        f"distillation ceiling: the teacher is asked about those of the {len(indices)} training-pool images it "
        f"has not answered yet (purpose '{PURPOSE}', apart from the budget)"
    )
    bar = progress(len(indices), "teacher queries (ceiling)")
    descriptors, stats = access.describe(pool_inputs(prepared, indices), PURPOSE, len(indices), bar.update)
    bar.close()
    save_npz_atomic(out, indices=indices, descriptors=descriptors.astype(np.float32), skipped=np.array(""))
    click.echo(f"ceiling: {stats['sent']} images sent this run, {stats['spent']} for the pool in total")
    distributed.stop()


if __name__ == "__main__":
    dump_pool()
