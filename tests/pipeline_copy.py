"""Helpers for tests that run the real DVC pipeline in a throw-away copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TINY = {
    "budgets": [20, 50],
    "methods": ["derd", "supervised"],
    "seeds": [0],
    "students": {"tiny": {"arch": "student_tiny", "dim": 32, "weights": ""}},
    "student": "small",
    "sizes": ["small", "tiny"],
    "full": {"steps": 30},
    "data": {"n_queries": 100, "pool_limit": 6000, "test_limit": 1000},
    "sample": {"val_size": 500, "val_queries": 50, "features": "small"},
    "teacher": {"epochs": 1, "train_images": 2000, "batch_size": 128},
    "train": {"steps": 30, "batch_size": 32, "virtual_per_batch": 16, "log_every": 10},
    "pretrain": {"steps": 6, "batch_size": 32},
    "ceiling": {"steps": 10},
    "levers": {"budgets": [20]},
    "runtime": {"threads": 1},
}


def deep_update(base: dict, override: dict) -> dict:
    for k, v in override.items():
        base[k] = deep_update(dict(base.get(k, {})), v) if isinstance(v, dict) else v
    return base


def copy_repo(dest: Path, override: dict | None = None) -> Path:
    """The code, dvc.yaml and params.yaml, with ``override`` merged into the params; the teacher's
    store goes beside the copy (``<dest>/../teacher-store``) unless the override says where."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, dest / name)
    (dest / ".dvc").mkdir()
    (dest / ".dvc" / "config").write_text("[core]\n    analytics = false\n    no_scm = true\n")
    set_params(dest, override or {})
    return dest


def set_params(repo: Path, override: dict) -> None:
    """The repository's params.yaml with ``override`` merged in, the teacher's store beside ``repo``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["queries"]["store"] = str(repo.parent / "teacher-store")
    (repo / "params.yaml").write_text(yaml.safe_dump(deep_update(params, override), sort_keys=False))


def env() -> dict:
    e = dict(os.environ)
    e.pop("MLFLOW_TRACKING_URI", None)
    e.pop("MLFLOW_EXPERIMENT_NAME", None)
    e.update(
        PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}",
        DERD_NO_PROGRESS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        PYTHONUNBUFFERED="1",
    )
    return e


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def ledger_calls(store: Path, purpose: str | None = None, kind: str = "*") -> list[dict]:
    """Every teacher call in the ledgers under ``store`` (of teachers of ``kind``), as send line +
    ``outcome`` dicts."""
    calls = [c for ledger in sorted(store.glob(f"{kind}-*/ledger.jsonl")) for c in read_ledger(ledger)]
    return [c for c in calls if purpose is None or c["purpose"] == purpose]


def read_ledger(path: Path) -> list[dict]:
    """One ledger's calls: each ``send`` line with the ``outcome`` recorded after it (None: none yet)."""
    calls: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        e = json.loads(line)
        if e["event"] == "send":
            calls[e["call"]] = dict(e, outcome=None)
        elif e.get("call") in calls:
            calls[e["call"]]["outcome"] = e["event"]
    return list(calls.values())


def ledger_total(repo: Path, purpose: str = "train") -> int:
    """Images sent to the teacher for ``purpose`` by the copy's store, over all its teachers."""
    return sum(c["images"] for c in ledger_calls(repo.parent / "teacher-store", purpose))


def clone(finished: Path, dest: Path) -> Path:
    """A copy of a finished pipeline run (outputs, DVC cache, teacher store, MLflow store) to change
    without touching the original; returns the copy's repository."""

    def ignore(folder, names):  # logs, and DVC's transient locks (another worker may be running dvc there)
        return [n for n in names if n.endswith(".log") or (n == "tmp" and Path(folder).name == ".dvc")]

    shutil.copytree(finished.parent, dest, ignore=ignore)
    repo = dest / finished.name
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["queries"]["store"] = str(dest / "teacher-store")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if (repo / "mlflow.db").exists():  # its artifact locations are absolute: point them at the copy
        import sqlite3

        old, new = str(finished.resolve()), str(repo.resolve())
        with sqlite3.connect(repo / "mlflow.db") as db:
            for (table,) in db.execute("select name from sqlite_master where type = 'table'").fetchall():
                for column in db.execute(f"pragma table_info('{table}')").fetchall():
                    if column[2].upper() in ("TEXT", "VARCHAR") or column[2].upper().startswith("VARCHAR"):
                        db.execute(
                            f'update "{table}" set "{column[1]}" = replace("{column[1]}", ?, ?) '
                            f'where "{column[1]}" like ?',
                            (old, new, f"%{old}%"),
                        )
    return repo


def current_params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def edit_params(repo: Path, override: dict) -> dict:
    """Merge ``override`` into the copy's current params.yaml."""
    params = deep_update(current_params(repo), override)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def stage_argv(repo: Path, name: str) -> tuple[str, list[str]]:
    """The module and arguments of a stage (``name`` as DVC spells it, e.g. ``sample@50``), from dvc.yaml."""
    import re
    import shlex

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    base, _, item = name.partition("@")
    cmd = stages[base]["cmd"]
    if item:
        keys = list(stages[base]["matrix"])
        values = dict(zip(keys, _split_item(item, len(keys))))
        cmd = re.sub(r"\$\{item\.(\w+)\}", lambda m: values[m.group(1)], cmd)
    params = yaml.safe_load((repo / "params.yaml").read_text())

    def lookup(m):  # ${student}, ${full.method}: values of params.yaml, as DVC interpolates them
        value = params
        for key in m.group(1).split("."):
            value = value[key]
        return str(value)

    argv = shlex.split(re.sub(r"\$\{([\w.]+)\}", lookup, cmd))
    return argv[2], argv[3:]


def _split_item(item: str, n: int) -> list[str]:
    """``300-derd-plus-0`` -> ['300', 'derd-plus', '0'] for (budget, method, seed)."""
    parts = item.split("-")
    if n == 1:
        return [item]
    if n == 2:
        return [parts[0], "-".join(parts[1:])]
    return [parts[0], "-".join(parts[1:-1]), parts[-1]]


def run_stage(repo: Path, name: str, check: bool = True):
    """Run one stage's command in this process (click's CliRunner) in ``repo``: what DVC would run,
    without its start-up cost. Returns the click result."""
    import importlib

    from click.testing import CliRunner

    module, args = stage_argv(repo, name)
    command = getattr(importlib.import_module(module), module.split(".")[-1])
    cwd, environ = os.getcwd(), dict(os.environ)
    os.chdir(repo)
    try:
        result = CliRunner().invoke(command, args, catch_exceptions=False)
    finally:  # as if it had been a process of its own (MLflow, for one, exports its tracking URI)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
    if check and result.exit_code != 0:
        raise AssertionError(f"stage {name} failed ({result.exit_code}):\n{result.output}")
    return result


def run_pipeline(repo: Path, commit: bool = True) -> list[str]:
    """Every stage of dvc.yaml, in order, in this process (`run_stage`), then `dvc commit` to record
    them in dvc.lock as `dvc repro` would: the same commands and outputs without a Python start-up
    per stage. The tests that are about what DVC reruns use `dvc repro` itself."""
    names = dvc(repo, "stage", "list", "--name-only").stdout.split()
    for name in names:
        run_stage(repo, name)
    if commit:
        dvc(repo, "commit", "-f")
    return names


def repo_params(override: dict | None = None):
    """The repository's params (its params.yaml, the one place defaults live) with ``override``."""
    from pipeline.params import parse_params

    return parse_params(deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), override or {}))


def built_teacher(teacher_dir: Path, model, arch: str = "teacher_cnn", input_shape=(1, 28, 28)) -> Path:
    """A teacher folder as the teacher stage writes it for a built teacher: weights and card."""
    from pipeline.checkpoint import save_model
    from pipeline.io import file_sha256, write_json_atomic

    save_model(teacher_dir / "weights.pt", model, arch)
    write_json_atomic(
        teacher_dir / "card.json",
        {
            "kind": "train",
            "arch": arch,
            "dim": model.dim,
            "weights": "weights.pt",
            "weights_sha256": file_sha256(teacher_dir / "weights.pt"),
            "parameters": 0,
            "flops_per_image": 0,
            "input_shape": list(input_shape),
        },
    )
    return teacher_dir
