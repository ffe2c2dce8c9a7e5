"""Locks across the processes of one pytest session (``make test`` runs two xdist workers): the tests
that train hold one, so that never two of them train at once on two cores; the shared tiny run is built
under another, once for every worker."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

_held: dict[str, int] = {}


def shared_root(tmp_path_factory) -> Path:
    """The folder every worker of this pytest session shares: under pytest-xdist each worker's base folder
    is a child of it; without workers it is the session's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def training_lock(tmp_path_factory) -> Path:
    """The lock a test that trains holds (and the shared tiny run's build): one per pytest session."""
    return shared_root(tmp_path_factory) / "training.lock"


@contextlib.contextmanager
def exclusive(path: Path):
    """An exclusive lock on ``path`` across processes (``flock``); re-entrant within one process."""
    key = str(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held[key] = 1
        try:
            yield
        finally:
            _held[key] = 0
            fcntl.flock(handle, fcntl.LOCK_UN)
