"""code: one fingerprint per stage module (the hashes of every project file it may run), which that
stage depends on instead of on each file: see pipeline/code_deps.py."""

from pathlib import Path

import click

from pipeline.code_deps import fingerprint, stage_modules


@click.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="the fingerprints folder")
def code(out: Path):
    root = Path(__file__).resolve().parents[1]
    out.mkdir(parents=True, exist_ok=True)
    for module in stage_modules(root):
        (out / f"{module}.txt").write_text(fingerprint(root, module))
    click.echo(f"code: {len(stage_modules(root))} stage fingerprints in {out}")


if __name__ == "__main__":
    code()
