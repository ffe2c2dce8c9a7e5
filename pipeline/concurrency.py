"""A training stage's students (its seeds) trained at once on a CPU, and the students evaluated at
once: one forked process each, the cores shared between them.

Why: the students are small networks, which a second torch thread speeds up by well under 2x; on a
2-core CPU, a stage's three seeds side by side (one thread each) finished in 1.2-1.5x less time than
one after another with both threads (``scripts/bench_stages.py`` prints this machine's figure). Fork, not spawn: a
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
import time
import traceback
from collections.abc import Callable, Sequence

from pipeline.errors import DerdError

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerFailed(DerdError):
    """A student's process failed; its own error is printed above this line."""


def plan(students: int, device_type: str, processes: int, at_most: int, threads: int, cores: int) -> tuple[int, int]:
    """(students trained or evaluated at once, torch threads for each; 0 = torch's default). ``at_most`` is
    ``runtime.students_at_once`` (0: every student of the stage); the threads, ``runtime.threads`` or
    else ``cores``, are shared evenly between the students at once (one at least each: three seeds on
    two cores run as three one-thread processes, which beat two and then one)."""
    if students <= 1 or device_type != "cpu" or processes > 1 or at_most == 1:
        return 1, threads
    at_once = students if at_most == 0 else min(at_most, students)
    return at_once, max(1, (threads or cores) // at_once)


def _die_with_parent(parent: int) -> None:
    """Linux kills this child when its parent dies, even by SIGKILL; elsewhere, nothing to ask for."""
    try:
        asked = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):
        return
    if asked and os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _child(job: Callable[[], None], threads: int, parent: int) -> int:
    """What the forked process runs: ``job``, to its exit status (the caller leaves with it)."""
    try:
        _die_with_parent(parent)
        if threads:
            import torch

            torch.set_num_threads(threads)
            if "faiss" in sys.modules:  # its own OpenMP, which torch's setting does not reach
                sys.modules["faiss"].omp_set_num_threads(threads)
        job()
        return 0
    except SystemExit as exc:  # a stage's one-line error has been printed already
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1


STOPS = {signal.SIGINT, signal.SIGTERM}


def _fork(job: Callable[[], None], threads: int) -> int:
    """Start ``job`` in a forked child; its pid. The child never returns here: whatever happens in it,
    it ends in ``os._exit`` (a child unwinding into the caller's code would run the parent's work);
    Ctrl-C and SIGTERM wait until it is inside that guard."""
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        code = _child(job, threads, parent)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        os._exit(code)


def _reap(pids) -> tuple[int, int]:
    """Wait for one of ``pids`` (and no other child of this process: a caller may have its own) to end;
    its pid and exit status."""
    while True:
        for pid in pids:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return pid, os.waitstatus_to_exitcode(status)
        time.sleep(0.05)


def run_at_once(
    jobs: Sequence[Callable[[], None]], names: Sequence[str], at_once: int, threads: int, rerun: str = ""
) -> None:
    """Run every job, ``at_once`` of them at a time in forked children with ``threads`` torch threads
    each (one after another in this process when ``at_once`` is 1). The first failure stops the
    others and raises :class:`WorkerFailed` naming it and them; ``rerun`` says what a rerun keeps."""
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
                running[_fork(jobs[index], threads)] = index
            if not running:
                break
            pid, code = _reap(list(running))
            index = running.pop(pid)
            if pid in killed and code == -signal.SIGTERM:
                stopped.append(names[index])
            elif code < 0:  # nothing of its own was printed: say what ended it
                failed.append(f"{names[index]} (killed by {signal.Signals(-code).name}: out of memory?)")
            elif code != 0:
                failed.append(f"{names[index]} (exit status {code}; its error is above)")
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
            f"{', '.join(failed)} failed"
            + (f"; stopped: {', '.join(stopped)}" if stopped else "")
            + (f"; not started: {', '.join(waiting)}" if waiting else "")
            + f". Fix it and rerun `dvc repro`{rerun}"
        )
