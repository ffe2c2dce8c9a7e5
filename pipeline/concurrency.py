"""A training stage's students (its seeds) trained at once on a CPU: one forked process each, the
cores shared between them.

Why: the students are small networks, and a second torch thread speeds one up by only about 40%; two
students side by side with one thread each do about 1.4x the work of the same two one after the other
with two threads each (``scripts/bench_stages.py`` prints this machine's figure). Fork, not spawn: a
child inherits the parent's imported torch, where a spawned one would import it again (seconds each).
The parent forks before it computes anything with torch, so no thread pool is copied half-built.

A child dies with its parent (``PR_SET_PDEATHSIG``): a killed stage leaves no student training behind
it, only the resumable checkpoints the children wrote. On a GPU, under torchrun, or for a single
student, the students run one after another in this process."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from pipeline.errors import DerdError

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerFailed(DerdError):
    """A student's process failed; its own error is printed above this line."""


def plan(students: int, device_type: str, processes: int, at_most: int, threads: int, cores: int) -> tuple[int, int]:
    """(students trained at once, torch threads for each; 0 = torch's default). ``at_most`` is
    ``runtime.students_at_once`` (0: every student of the stage), ``threads`` is ``runtime.threads``
    (0: the cores shared evenly between the students at once)."""
    if students <= 1 or device_type != "cpu" or processes > 1 or at_most == 1:
        return 1, threads
    at_once = students if at_most == 0 else min(at_most, students)
    return at_once, threads or max(1, cores // at_once)


def _die_with_parent(parent: int) -> None:
    """Linux kills this child when its parent dies, even by SIGKILL; elsewhere, nothing to ask for."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _child(job: Callable[[], None], threads: int, parent: int) -> None:
    """The forked process: run ``job`` and leave with its exit status, never returning to the caller."""
    code = 1
    try:
        _die_with_parent(parent)
        if threads:
            import torch

            torch.set_num_threads(threads)
        job()
        code = 0
    except SystemExit as exc:  # a stage's one-line error has been printed already
        code = exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_at_once(jobs: Sequence[Callable[[], None]], names: Sequence[str], at_once: int, threads: int) -> None:
    """Run every job, ``at_once`` of them at a time in forked children with ``threads`` torch threads
    each (one after another in this process when ``at_once`` is 1). The first failure stops the
    others and raises :class:`WorkerFailed` naming it; their checkpoints stay for the rerun."""
    if at_once <= 1:
        for job in jobs:
            job()
        return
    pending = list(range(len(jobs)))
    running: dict[int, int] = {}
    failed: list[str] = []
    stopped: list[str] = []
    killed: set[int] = set()
    try:
        while pending or running:
            while pending and len(running) < at_once and not failed:
                index = pending.pop(0)
                sys.stdout.flush()
                sys.stderr.flush()
                parent = os.getpid()
                pid = os.fork()
                if pid == 0:
                    _child(jobs[index], threads, parent)
                running[pid] = index
            if not running:
                break
            pid, status = os.wait()
            index = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if pid in killed:
                stopped.append(names[index])
            elif code != 0:
                failed.append(f"{names[index]} (exit status {code})")
                for other in running:
                    os.kill(other, signal.SIGTERM)
                    killed.add(other)
    finally:  # interrupted here: no child outlives this process
        for pid in running:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    if failed:
        waiting = [names[i] for i in pending]
        raise WorkerFailed(
            f"training {', '.join(failed)} failed (its error is above)"
            + (f"; stopped: {', '.join(stopped)}" if stopped else "")
            + (f"; not started: {', '.join(waiting)}" if waiting else "")
            + ". Fix it and rerun `dvc repro`: every student's checkpoint is kept and resumed"
        )
