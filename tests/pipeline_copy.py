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
    "data": {"n_queries": 200},
    "teacher": {"epochs": 1, "train_images": 2000, "batch_size": 128},
    "train": {"steps": 30, "batch_size": 32, "virtual_per_batch": 16, "log_every": 10},
    "runtime": {"threads": 1},
}


def deep_update(base: dict, override: dict) -> dict:
    for k, v in override.items():
        base[k] = deep_update(dict(base.get(k, {})), v) if isinstance(v, dict) else v
    return base


def copy_repo(dest: Path, override: dict | None = None) -> Path:
    """The code, dvc.yaml and params.yaml, with ``override`` merged into the params."""
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
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(deep_update(params, override), sort_keys=False))


def env() -> dict:
    e = dict(os.environ)
    e.pop("MLFLOW_TRACKING_URI", None)
    e.pop("MLFLOW_EXPERIMENT_NAME", None)
    e.update(PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}", DERD_NO_PROGRESS="1", MLFLOW_DISABLE_TELEMETRY="true",
             DO_NOT_TRACK="true", PYTHONUNBUFFERED="1")
    return e


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def ledger_total(repo: Path, purpose: str = "train") -> int:
    lines = (repo / "teacher_queries" / purpose / "ledger.jsonl").read_text().splitlines()
    return sum(json.loads(line)["count"] for line in lines)
