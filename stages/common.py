"""What every stage command shares: params, threads, devices, progress, and clean errors.

Stages take every path they read or write as an argument from ``dvc.yaml``; relative paths are
relative to the working directory (the repository root when DVC runs them).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path

import click

from pipeline.errors import DerdError
from pipeline.grid import run_name  # noqa: F401  (the stages' file names)

params_option = click.option(
    "--params",
    "params_path",
    default="params.yaml",
    show_default=True,
    type=click.Path(path_type=Path),
    help="the params file",
)


def path_option(*names, **kwargs):
    return click.option(*names, type=click.Path(path_type=Path), required=True, **kwargs)


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def stage(fn):
    """Run a stage body, turning the project's own errors into one clear line and exit code 1
    (``DERD_DEBUG=1`` keeps the traceback); any other exception is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DerdError as exc:
            if os.environ.get("DERD_DEBUG") == "1":
                raise
            click.echo(f"error [{fn.__name__}]: {exc}", err=True)
            sys.exit(1)
        except OSError as exc:
            if not _disk_full(exc):
                raise
            click.echo(
                f"error [{fn.__name__}]: disk full while writing {exc.filename or 'an output'}: free some "
                "space and rerun `dvc repro`. Finished stages, teacher answers and training checkpoints "
                "are kept; no file was left half-written.",
                err=True,
            )
            sys.exit(1)

    return wrapper


def load(params_path: Path = Path("params.yaml")):
    """Validated params, for stages that need no torch."""
    from pipeline.params import load_params

    return load_params(params_path)


def setup(params_path: Path = Path("params.yaml")):
    """Load and validate params; set torch threads; return (params, device)."""
    from pipeline.data.tensors import resolve_device

    params = load(params_path)
    import torch

    if params.runtime.threads:
        torch.set_num_threads(params.runtime.threads)
    return params, resolve_device(params.runtime.device)


class PlainProgress:
    """Progress as plain lines (a log, CI, DVC's pipes): the start, each further tenth, the end."""

    def __init__(self, total: int, desc: str, quiet: bool):
        self.total, self.desc, self.quiet, self.done, self.shown = total, desc, quiet, 0, -1
        self._line(force=True)

    def _line(self, force=False):
        tenth = 10 * self.done // max(self.total, 1)
        if not self.quiet and (force or tenth > self.shown):
            self.shown = tenth
            click.echo(f"{self.desc}: {self.done}/{self.total}", err=True)

    def update(self, n: int = 1):
        self.done += n
        self._line()

    def close(self):
        if self.shown < 10:
            self._line(force=True)


def progress(total: int, desc: str, quiet: bool = False, plain: bool = False):
    """A progress bar on a terminal; plain lines otherwise, or beside other processes' progress
    (``plain``); none with ``DERD_NO_PROGRESS=1`` or ``quiet``."""
    quiet = quiet or os.environ.get("DERD_NO_PROGRESS") == "1"
    if sys.stderr.isatty() and not quiet and not plain:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, mininterval=1.0)
    return PlainProgress(total, desc, quiet)
