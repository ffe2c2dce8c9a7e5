"""sample@B: the seeded, nested subset of ``B`` pool images (a prefix of one permutation)."""
import io
from pathlib import Path

import click
import numpy as np

from stages.common import load, params_option, path_option, stage


@click.command()
@click.option("--budget", type=int, required=True, help="number of pool images (= teacher queries)")
@params_option
@path_option("--prepared", help="the prepared dataset (its pool.json gives the pool size)")
@path_option("--out", help="the subset's .npy file")
@stage
def sample(budget: int, params_path: Path, prepared: Path, out: Path):
    from pipeline.data import prepared as prepared_data
    from pipeline.distill.sampling import nested_subset
    from pipeline.io import atomic_write_bytes
    from pipeline.params import validate

    params = load(params_path)
    pool_size = prepared_data.pool_meta(prepared)["pool_size"]
    validate(params, pool_size=pool_size)
    subset = nested_subset(pool_size, budget, params.sample.seed)
    buf = io.BytesIO()
    np.save(buf, subset)
    atomic_write_bytes(out, buf.getvalue())
    click.echo(f"subset of {budget} / {pool_size} pool images ({100 * budget / pool_size:.2f}%)")


if __name__ == "__main__":
    sample()
