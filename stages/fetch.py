"""fetch: the raw Fashion-MNIST IDX files, copied from Debian's package or downloaded, verified."""
from pathlib import Path

import click

from stages.common import ROOT, setup, stage


@click.command()
@stage
def fetch():
    from pipeline.data import fashion_mnist

    params, _ = setup()
    for path in fashion_mnist.fetch(ROOT / params.data.raw_dir, source=fashion_mnist.DEBIAN_DIR):
        click.echo(f"verified {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    fetch()
