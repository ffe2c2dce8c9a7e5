"""fetch: the raw Fashion-MNIST IDX files, copied from Debian's package or downloaded, verified.

The default data: always fetched (a few seconds), so that a pipeline on a folder dataset can be
switched back to it at no cost."""
import click

from stages.common import ROOT, setup, stage


@click.command()
@stage
def fetch():
    from pipeline.data import fashion_mnist

    from pipeline.params import FASHION_MNIST_DIR

    setup()
    for path in fashion_mnist.fetch(ROOT / FASHION_MNIST_DIR, source=fashion_mnist.DEBIAN_DIR):
        click.echo(f"verified {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    fetch()
