"""prepare: the pool and the retrieval test split, in the form every later stage reads.

- Default (Fashion-MNIST, or a folder with ``data.test: split``): images as uint8 arrays with their
  names; the dataset's test images are split, seeded, into queries and database with class-level
  ground truth.
- Photo datasets (SfM-120k, a folder next to a photo test set) and the revisited test sets
  (roxford5k, rparis6k, + R1M, or your own ``gnd_*.pkl``): the files are listed, not copied; queries
  keep their ``bbx`` crop box. Ground truth is always written in the revisited ``gnd`` form.
Images skipped as unreadable are listed in skipped.json."""

import pickle
from pathlib import Path

import click
import numpy as np

from stages.common import params_option, path_option, setup, stage


def _rel(path: Path, prepared: Path) -> str:
    """An image folder as seen from the prepared folder, so that the prepared data can be read from
    anywhere and moves with the repository."""
    import os

    return os.path.relpath(Path(path).resolve(), prepared.resolve())


@click.command()
@params_option
@path_option("--downloads", help="the download stage's folder (photo datasets and benchmarks)")
@path_option("--out", help="the prepared dataset's folder")
@stage
def prepare(params_path: Path, downloads: Path, out: Path):
    from pipeline.data import benchmarks
    from pipeline.data.datasets import load_dataset
    from pipeline.data.folder import load_folder_files
    from pipeline.data.split import class_level_gnd, split_queries
    from pipeline.io import atomic_write_bytes, save_npz_atomic, write_json_atomic

    params, _ = setup(params_path)
    d = params.data
    skipped: list[dict] = []
    if d.test == "split":
        arrays, skipped = load_dataset(d)
        test_images, test_labels, test_names = arrays["test_images"], arrays["test_labels"], arrays["test_names"]
        q, db = split_queries(len(test_images), d.n_queries, d.split_seed)
        gnd = {
            "imlist": test_names[db].tolist(),
            "qimlist": test_names[q].tolist(),
            "gnd": class_level_gnd(test_labels[q], test_labels[db]),
        }
        save_npz_atomic(
            out / "pool.npz", images=arrays["train_images"], labels=arrays["train_labels"], names=arrays["train_names"]
        )
        save_npz_atomic(
            out / "test.npz",
            query_images=test_images[q],
            query_names=test_names[q],
            db_images=test_images[db],
            db_names=test_names[db],
        )
        pool_size, labels = len(arrays["train_images"]), arrays["train_labels"]
    else:
        if d.dataset == "sfm120k":
            pool, labels = benchmarks.load_sfm120k(downloads / "sfm120k")
        else:  # a folder of photos as the pool of a photo test set
            pool, labels, skipped = load_folder_files(Path(d.raw_dir), d.on_bad_image)
        if d.pool_limit:
            pool, labels = pool.head(d.pool_limit), labels[: d.pool_limit]
        folder = Path(d.test_dir) if d.test == "revisited" else downloads / d.test
        test = benchmarks.load_revisited(folder, downloads / "revisitop1m", d.distractors)
        gnd = {"imlist": test.imlist, "qimlist": test.qimlist, "gnd": test.gnd}
        # the photos' content hashes ride along with their paths (see ImageFiles.digests)
        save_npz_atomic(
            out / "pool.npz",
            root=_rel(pool.root, out),
            paths=np.array(pool.paths),
            labels=labels,
            digests=pool.digests(),
        )
        save_npz_atomic(
            out / "test.npz",
            root=_rel(test.queries.root, out),
            query_paths=np.array(test.queries.paths),
            query_boxes=test.queries.boxes,
            db_paths=np.array(test.database.paths),
            query_digests=test.queries.digests(),
            db_digests=test.database.digests(),
        )
        pool_size, q, db = len(pool), test.queries.paths, test.database.paths
    write_json_atomic(out / "skipped.json", skipped)
    for item in skipped:
        click.echo(f"skipped unreadable image {item['path']}: {item['error']}", err=True)
    atomic_write_bytes(out / "gnd.pkl", pickle.dumps(gnd, protocol=4))
    meta = {
        "dataset": d.dataset,
        "test": d.test,
        "pool_size": int(pool_size),
        "n_queries": int(len(q)),
        "n_database": int(len(db)),
        "n_classes": int(np.unique(labels).size),
        "skipped_images": len(skipped),
    }
    write_json_atomic(out / "meta.json", meta)
    write_json_atomic(out / "pool.json", {k: meta[k] for k in ("dataset", "pool_size", "n_classes")})
    click.echo(f"pool {meta['pool_size']} images; {meta['n_queries']} queries; {meta['n_database']} database images")


if __name__ == "__main__":
    prepare()
