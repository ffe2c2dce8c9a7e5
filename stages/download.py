"""download: the raw files a dataset or test set needs beyond the default data, fetched once.

Downloads resume after a cut connection and are verified before use; archives are extracted safely.
Everything lands under ``--downloads`` (kept across runs, never deleted by DVC); finished downloads
are skipped. The stage writes a manifest of what the prepare stage will read (for your own
folders: their files' sizes and times); prepare reruns only when that manifest changes. DVC reruns
this stage when the ``data`` params change; after deleting downloads or editing a
``data.test_dir`` folder, run ``dvc repro -f download``. (A ``folder`` pool is a dependency of
prepare itself, so its edits are seen.)
"""

from pathlib import Path

import click

from stages.common import load, params_option, path_option, stage


def stamp(path):
    return [path.stat().st_size, path.stat().st_mtime_ns]


def listing(folder):
    return {str(p.relative_to(folder)): stamp(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@click.command()
@params_option
@path_option("--downloads", help="where downloads are kept; the manifest is written here")
@stage
def download(params_path: Path, downloads: Path):
    from pipeline.data import benchmarks
    from pipeline.errors import DatasetError
    from pipeline.io import write_json_atomic

    d = load(params_path).data
    manifest: dict = {"dataset": d.dataset, "test": d.test, "distractors": d.distractors}
    if d.test == "revisited":
        folder = Path(d.test_dir)
        if not folder.is_dir():
            raise DatasetError(
                f"{folder} is not a folder: set data.test_dir in params.yaml to your test folder "
                f"(gnd_<name>.pkl and jpg/)"
            )
        manifest["test_folder"] = listing(folder)
    if d.dataset == "sfm120k":
        root = benchmarks.fetch_sfm120k(downloads, d.mirror)
        manifest["sfm120k"] = {"db": stamp(root / "retrieval-SfM-120k.pkl")}
    if d.test in benchmarks.REVISITED:
        root = benchmarks.fetch_revisited(d.test, downloads, d.mirror, d.distractors)
        manifest[d.test] = {"gnd": stamp(root / f"gnd_{d.test}.pkl")}
    write_json_atomic(downloads / "manifest.json", manifest)
    click.echo(f"downloads ready under {downloads}/")


if __name__ == "__main__":
    download()
