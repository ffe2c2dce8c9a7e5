"""The project modules each DVC stage imports, so that dvc.yaml can depend on exactly those.

A stage whose code changes must rerun; a stage must not rerun for code it never runs. This walks
the imports of each stage's module (function-level imports included, so the set is what the stage
*may* run) through the project's own packages, and compares them with the stage's code deps in
dvc.yaml:

  python scripts/stage_deps.py           # prints, per stage, what is missing or extra
  python scripts/stage_deps.py --print   # the dependency list each stage should have
  python scripts/stage_deps.py --write   # rewrites the code deps in dvc.yaml (other deps, comments kept)
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def imports_of(path: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (top level or inside functions)."""
    found: set[str] = set()
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES and module_file(m) is not None}


def closure(module: str) -> set[Path]:
    """Files of ``module`` and of every project module it imports, with their packages' __init__."""
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # parent packages run first
        todo += sorted(imports_of(module_file(name)))
    files = {module_file(m) for m in seen}
    return {f.relative_to(REPO) for f in files if f.name != "__init__.py" or f.read_text().strip()}


def stage_module(cmd: str) -> str:
    return cmd.split("python -m ", 1)[1].split()[0]


def code_deps(deps: list) -> set[Path]:
    """The .py files a stage's deps cover (a folder covers every module under it)."""
    out: set[Path] = set()
    for dep in deps:
        dep = next(iter(dep)) if isinstance(dep, dict) else dep
        path = REPO / dep
        if path.is_dir() and dep.split("/")[0] in PACKAGES:
            out |= {p.relative_to(REPO) for p in path.rglob("*.py")
                    if p.name != "__init__.py" or p.read_text().strip()}
        elif dep.endswith(".py"):
            out.add(Path(dep))
    return out


def check(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, tuple[set[Path], set[Path]]]:
    """Per stage: (imported but not a dependency, a dependency but never imported)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    report = {}
    for name, stage in stages.items():
        needed = closure(stage_module(stage["cmd"]))
        listed = code_deps(stage.get("deps", []))
        report[name] = (needed - listed, listed - needed)
    return report


def write(dvc_yaml: Path = REPO / "dvc.yaml") -> None:
    """Replace each stage's code deps (modules of the project's packages) with what it imports."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    lines, out, stage, in_deps = dvc_yaml.read_text().splitlines(), [], None, False
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 2 and stripped.endswith(":") and not stripped.startswith("#"):
            stage, in_deps = stripped[:-1], False
        elif indent == 4 and stripped:
            in_deps = stripped == "deps:"
            if in_deps:
                out.append(line)
                out += [f"      - {p}" for p in sorted(closure(stage_module(stages[stage]["cmd"])))]
                continue
        if in_deps and stripped.startswith("- ") and stripped[2:].split("/")[0] in PACKAGES:
            continue  # an old code dep: replaced above
        out.append(line)
    dvc_yaml.write_text("\n".join(out) + "\n")


def main() -> int:
    if "--write" in sys.argv:
        write()
    if "--print" in sys.argv:
        for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
            print(f"{name}:\n" + "".join(f"  - {p}\n" for p in sorted(closure(stage_module(stage['cmd'])))))
        return 0
    bad = 0
    for name, (missing, extra) in check().items():
        for p in sorted(missing):
            print(f"{name}: imports {p}, which is not among its deps")
        for p in sorted(extra):
            print(f"{name}: depends on {p}, which it never imports")
        bad += len(missing) + len(extra)
    print("dvc.yaml code deps match the stages' imports" if not bad else
          f"{bad} mismatches: `python scripts/stage_deps.py --write` fixes them")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
