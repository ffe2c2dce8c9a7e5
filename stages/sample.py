"""sample: the nested subsets of pool images to ask the teacher about, one ``<B>.npy`` per budget:
prefixes of one order over the training pool (``sample.strategy``: a seeded permutation, or the
typical-coverage order of the pool's label-free view), computed once for the largest budget, so that
raising the largest budget asks only about new images. Never reads labels, the teacher, or the
validation split.

``--strategy random`` writes the random subsets at ``levers.budgets`` (the claim "selection beats
random"), whatever ``sample.strategy`` says."""

import io
from pathlib import Path

import click
import numpy as np

from stages.common import load, params_option, path_option, stage


@click.command()
@click.option(
    "--strategy",
    type=click.Choice(["params", "random"]),
    default="params",
    show_default=True,
    help="params: sample.strategy at every budget; random: a random subset at each of levers.budgets",
)
@params_option
@path_option("--prepared", help="the prepared dataset (its pool.json gives the pool size)")
@path_option("--pretrained", help="the folder of the sizes' label-free pretraining (sample.features: a size)")
@path_option("--out", help="the subsets' folder")
@stage
def sample(strategy: str, params_path: Path, prepared: Path, pretrained: Path, out: Path):
    from pipeline.data import prepared as prepared_data
    from pipeline.distill.selection import choose_subset
    from pipeline.io import atomic_write_bytes
    from pipeline.params import validate

    params = load(params_path)
    pool_size = prepared_data.pool_meta(prepared)["pool_size"]
    validate(params, pool_size=pool_size)
    budgets = sorted(params.levers.budgets if strategy == "random" else params.budgets)
    strategy = params.sample.strategy if strategy == "params" else strategy
    s = params.sample
    pool = prepared_data.pool_images(prepared) if strategy != "random" else None
    # on the CPU, whatever runtime.device says: the same floats on every machine, so the same images are asked
    order = choose_subset(
        strategy,
        s.features,
        pool,
        pool_size,
        budgets[-1],
        params.data.image_size,
        s.val_size,
        s.seed,
        pretrained,
        neighbours=s.neighbours,
    )
    out.mkdir(parents=True, exist_ok=True)
    for budget in budgets:
        buf = io.BytesIO()
        np.save(buf, order[:budget])
        atomic_write_bytes(out / f"{budget}.npy", buf.getvalue())
        click.echo(f"subset of {budget} / {pool_size} pool images ({100 * budget / pool_size:.2f}%), {strategy} order")


if __name__ == "__main__":
    sample()
