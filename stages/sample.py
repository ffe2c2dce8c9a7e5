"""sample@B: the seeded, nested subset of ``B`` pool images (a prefix of one permutation)."""
import io

import click
import numpy as np

from stages.common import ROOT, setup, stage


@click.command()
@click.option("--budget", type=int, required=True, help="number of pool images (= teacher queries)")
@stage
def sample(budget: int):
    from pipeline.data import prepared
    from pipeline.distill.sampling import nested_subset
    from pipeline.io import atomic_write_bytes
    from pipeline.params import validate

    params, _ = setup()
    pool_size = prepared.meta(ROOT / "data/prepared")["pool_size"]
    validate(params, pool_size=pool_size)
    subset = nested_subset(pool_size, budget, params.sample.seed)
    buf = io.BytesIO()
    np.save(buf, subset)
    atomic_write_bytes(ROOT / f"data/subsets/{budget}.npy", buf.getvalue())
    click.echo(f"subset of {budget} / {pool_size} pool images ({100 * budget / pool_size:.2f}%)")


if __name__ == "__main__":
    sample()
