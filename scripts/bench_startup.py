"""What starting a stage process costs before it does any work: Python, the project's own modules,
torch, MLflow, pandas; and what that adds up to over the default pipeline's stage processes.

  python scripts/bench_startup.py [--repeats 5]

Each figure is the median wall time of a fresh interpreter importing that much (`python -c`), the
same way DVC starts every stage. The total multiplies each stage's start-up by the number of its
processes in dvc.yaml as params.yaml expands it (`dvc stage list`).
"""

from __future__ import annotations

import ast
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mlflow", "pandas")


def timed(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def heavy_imports(module: str) -> list[str]:
    """The third-party heavyweights a stage imports anywhere in its own code and the project code it runs."""
    sys.path.insert(0, str(REPO))
    from pipeline.code_deps import closure

    found = set()
    for path in closure(REPO, module):
        for node in ast.walk(ast.parse((REPO / path).read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            )
            found |= {n.split(".")[0] for n in names if n.split(".")[0] in HEAVY}
    return sorted(found)


@click.command()
@click.option("--repeats", default=5, show_default=True)
def main(repeats: int) -> None:
    stages = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "stage", "list", "--name-only"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    import yaml

    cmds = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    per_module = Counter(cmds[s.split("@")[0]]["cmd"].split("python -m ", 1)[1].split()[0] for s in stages)
    skeleton = "click + pipeline.params"
    base = {"python": timed("pass", repeats), skeleton: timed("import click, pipeline.params", repeats)}
    for name in HEAVY:
        base[name] = timed(f"import {name}", repeats) - base["python"]
    click.echo(f"fresh interpreter start-up, median of {repeats}:")
    for name, seconds in base.items():
        click.echo(f"  {name:26s} {seconds:6.2f} s" + ("" if name in ("python", skeleton) else " (added)"))
    total = 0.0
    click.echo(f"\n{'stage module':28s} {'processes':>9s} {'start-up':>9s}  imports")
    for module, count in sorted(per_module.items(), key=lambda kv: -kv[1]):
        imports = heavy_imports(module)
        seconds = timed(f"import {module}" + "".join(f", {m}" for m in imports), repeats)
        total += count * seconds
        click.echo(f"{module:28s} {count:9d} {seconds:8.2f}s  {', '.join(imports) or '-'}")
    click.echo(
        f"\n{sum(per_module.values())} stage processes: {total:.0f} s of start-up before any work "
        f"({total / sum(per_module.values()):.2f} s each on average)"
    )


if __name__ == "__main__":
    main()
