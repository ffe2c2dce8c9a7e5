"""Each DVC stage depends on its code through one fingerprint file written by the ``code`` stage
(pipeline/code_deps.py): this checks that dvc.yaml says so, and fixes it.

  python scripts/stage_deps.py           # prints, per stage, what is wrong
  python scripts/stage_deps.py --print   # the files each stage's fingerprint covers
  python scripts/stage_deps.py --write   # rewrites the code deps in dvc.yaml (other deps, comments kept)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.code_deps import PACKAGES, closure, fingerprint_path  # noqa: E402

CODE_STAGE = "code"


def stage_module(cmd: str) -> str:
    return cmd.split("python -m ", 1)[1].split()[0]


def wanted(name: str, stage: dict) -> list[str]:
    """The code deps a stage should list."""
    return list(PACKAGES) if name == CODE_STAGE else [fingerprint_path(stage_module(stage["cmd"]))]


def code_deps(deps: list) -> list[str]:
    """The deps that stand for code: the packages' files and folders, and fingerprints."""
    out = []
    for dep in deps:
        dep = next(iter(dep)) if isinstance(dep, dict) else dep
        if dep.split("/")[0] in PACKAGES or dep.startswith(fingerprint_path("")[: -len(".txt")]):
            out.append(dep)
    return out


def check(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, tuple[set[str], set[str]]]:
    """Per stage: (code deps it lacks, code deps it should not have)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    report = {}
    for name, stage in stages.items():
        want, have = set(wanted(name, stage)), set(code_deps(stage.get("deps", [])))
        report[name] = (want - have, have - want)
    if CODE_STAGE not in stages:
        report[CODE_STAGE] = ({"the code stage itself"}, set())
    return report


def write(dvc_yaml: Path = REPO / "dvc.yaml") -> None:
    """Replace each stage's code deps with what ``wanted`` says."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out, stage, in_deps = [], None, False
    for line in dvc_yaml.read_text().splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 2 and stripped.endswith(":") and not stripped.startswith("#"):
            stage, in_deps = stripped[:-1], False
        elif indent == 4 and stripped:
            in_deps = stripped == "deps:"
            if in_deps:
                out.append(line)
                out += [f"      - {p}" for p in wanted(stage, stages[stage])]
                continue
        if in_deps and stripped.startswith("- ") and code_deps([stripped[2:]]):
            continue  # an old code dep: replaced above
        out.append(line)
    dvc_yaml.write_text("\n".join(out) + "\n")


def main() -> int:
    if "--write" in sys.argv:
        write()
    if "--print" in sys.argv:
        for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
            if name != CODE_STAGE:
                files = closure(REPO, stage_module(stage["cmd"]))
                print(f"{name}:\n" + "".join(f"  - {p}\n" for p in files))
        return 0
    bad = 0
    for name, (missing, extra) in check().items():
        for p in sorted(missing):
            print(f"{name}: lacks the code dep {p}")
        for p in sorted(extra):
            print(f"{name}: has the code dep {p}, which its fingerprint covers")
        bad += len(missing) + len(extra)
    print(
        "dvc.yaml's code deps are the stages' fingerprints"
        if not bad
        else f"{bad} mismatches: `python scripts/stage_deps.py --write` fixes them"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
