"""Run the pipeline with a preset (a partial params file) as a DVC experiment.

    python scripts/preset.py presets/paper-roxford5k.yaml          # dvc exp run -S ... for every key
    python scripts/preset.py presets/paper-roxford5k.yaml --check  # only validate the merged params

The preset's values are applied with ``dvc exp run -S``, so params.yaml keeps its comments, the run
is an experiment (``dvc exp show``), and ``git checkout params.yaml`` returns to the default.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import click
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def leaves(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out += leaves(value, name + ".") if isinstance(value, dict) else [(name, value)]
    return out


def deep_update(base: dict, override: dict) -> dict:
    for k, v in override.items():
        base[k] = deep_update(dict(base.get(k) or {}), v) if isinstance(v, dict) else v
    return base


def merged(preset: dict) -> dict:
    return deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), preset)


def set_args(preset: dict) -> list[str]:
    args = []
    for key, value in leaves(preset):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        args += ["-S", f"{key}={text}"]
    return args


@click.command()
@click.argument("preset", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="validate the merged params and print the command; run nothing")
def main(preset: Path, check: bool):
    from pipeline.params import ParamsError, load_params

    values = yaml.safe_load(preset.read_text()) or {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(merged(values), sort_keys=False))
        try:
            from pipeline.models.registry import check_names

            check_names(load_params(path))
        except ParamsError as exc:
            raise click.ClickException(f"{preset}: {str(exc).replace(str(path), 'merged params')}") from exc
    cmd = ["dvc", "exp", "run", *set_args(values)]
    click.echo(" ".join(f"'{a}'" if a != "-S" else a for a in cmd))
    if not check:
        sys.exit(subprocess.run(cmd, cwd=ROOT).returncode)


if __name__ == "__main__":
    main()
