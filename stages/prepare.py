"""prepare: the training images become the pool (Fashion-MNIST: the 60k training set); the test
images (its 10k test set) are split, seeded, into queries and database, with class-level ground
truth in the revisited ``gnd`` form. Images skipped as unreadable are listed in skipped.json."""
import pickle

import click
import numpy as np

from stages.common import ROOT, setup, stage

OUT = ROOT / "data" / "prepared"


@click.command()
@stage
def prepare():
    from pipeline.data.datasets import load_dataset
    from pipeline.data.split import class_level_gnd, split_queries
    from pipeline.io import atomic_write_bytes, save_npz_atomic, write_json_atomic

    params, _ = setup()
    arrays, skipped = load_dataset(params.data, ROOT)
    write_json_atomic(OUT / "skipped.json", skipped)
    for item in skipped:
        click.echo(f"skipped unreadable image {item['path']}: {item['error']}", err=True)
    test_images, test_labels = arrays["test_images"], arrays["test_labels"]
    q, db = split_queries(len(test_images), params.data.n_queries, params.data.split_seed)
    gnd = class_level_gnd(test_labels[q], test_labels[db])
    save_npz_atomic(OUT / "pool.npz", images=arrays["train_images"], labels=arrays["train_labels"])
    save_npz_atomic(OUT / "test.npz", query_images=test_images[q], query_ids=q, db_images=test_images[db], db_ids=db)
    atomic_write_bytes(OUT / "gnd.pkl", pickle.dumps(
        {"imlist": [f"t10k-{i:05d}" for i in db], "qimlist": [f"t10k-{i:05d}" for i in q], "gnd": gnd}, protocol=4))
    meta = {"dataset": params.data.dataset, "pool_size": int(len(arrays["train_images"])), "n_queries": int(len(q)),
            "n_database": int(len(db)), "n_classes": int(np.unique(arrays["train_labels"]).size), "skipped_images": len(skipped)}
    write_json_atomic(OUT / "meta.json", meta)
    click.echo(f"pool {meta['pool_size']} images; {meta['n_queries']} queries; {meta['n_database']} database images")


if __name__ == "__main__":
    prepare()
