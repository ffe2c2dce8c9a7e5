"""fetch: the raw Fashion-MNIST IDX files, copied from Debian's package or downloaded, verified.

The default data: always fetched (a few seconds), so that a pipeline on a folder dataset can be
switched back to it at no cost."""

from pathlib import Path

import click

from stages.common import path_option, stage


@click.command()
@path_option("--out", help="folder for the four IDX files")
@stage
def fetch(out: Path):
    from pipeline.data import fashion_mnist

    for path in fashion_mnist.fetch(out, source=fashion_mnist.DEBIAN_DIR):
        click.echo(f"verified {path}")


if __name__ == "__main__":
    fetch()
