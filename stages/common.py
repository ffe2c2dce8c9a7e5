"""What every stage command shares: the repo root, params, threads, devices, and clean errors."""
from __future__ import annotations

import errno
import functools
import os
import pickle
import sys
from pathlib import Path

import click

ROOT = Path.cwd()

# error types a user can fix; anything else is a bug and keeps its traceback
_USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, pickle.UnpicklingError)


def user_errors() -> tuple[type[BaseException], ...]:
    from pipeline.data.fashion_mnist import DatasetError
    from pipeline.params import ParamsError
    from pipeline.teacher.queries import BudgetExceeded
    from pipeline.tracking import TrackingError

    return _USER_ERRORS + (DatasetError, ParamsError, BudgetExceeded, TrackingError)


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def stage(fn):
    """Run a stage body, turning user-fixable errors into one clear line and exit code 1
    (``DERD_DEBUG=1`` keeps the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except user_errors() as exc:
            if os.environ.get("DERD_DEBUG") == "1":
                raise
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            click.echo(f"error [{fn.__name__}]: {msg}", err=True)
            sys.exit(1)
        except OSError as exc:
            if not _disk_full(exc):
                raise
            click.echo(f"error [{fn.__name__}]: disk full while writing {exc.filename or 'an output'}: free some "
                       "space and rerun `dvc repro`. Finished stages, teacher answers and training checkpoints "
                       "are kept; no file was left half-written.", err=True)
            sys.exit(1)

    return wrapper


def load(params_path: str = "params.yaml"):
    """Validated params, for stages that need no torch."""
    from pipeline.params import load_params

    return load_params(ROOT / params_path)


def setup(params_path: str = "params.yaml"):
    """Load and validate params; set torch threads; return (params, device)."""
    from pipeline.data.tensors import resolve_device

    params = load(params_path)
    import torch

    if params.runtime.threads:
        torch.set_num_threads(params.runtime.threads)
    return params, resolve_device(params.runtime.device)


def run_name(budget: int, method: str, seed: int) -> str:
    """The file stem of one student: ``models/students/<name>.pt``, ``metrics/students/<name>.json``."""
    return f"{budget}-{method}-{seed}"


def check_cell(params, budget: int, method: str, seed: int) -> None:
    """A stage asked for a cell that params.yaml does not define is a mistake worth naming."""
    if budget not in params.budgets:
        raise ValueError(f"budget {budget} is not in params.yaml's budgets {list(params.budgets)}")
    if method not in params.method:
        raise ValueError(f"method {method!r} has no settings under 'method' in params.yaml")
    if seed not in params.seeds:
        raise ValueError(f"seed {seed} is not in params.yaml's seeds {list(params.seeds)}")


def progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, mininterval=1.0,
                disable=os.environ.get("DERD_NO_PROGRESS") == "1")
