"""The suite's own rule on two cores: tests that train (marker ``trains``) are one unit of work for
xdist's scheduler (one worker runs them in turn) and hold one lock across the workers, so that never two
of them train at once, however the suite is started; the lock is re-entrant within a worker."""

import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.locks import exclusive, training_lock

PROBE = """
import fcntl, sys
with open(sys.argv[1], "a") as f:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(3)
"""


def taken_elsewhere(path) -> bool:
    return subprocess.run([sys.executable, "-c", PROBE, str(path)], timeout=60).returncode == 3


def test_the_lock_keeps_other_processes_out_and_is_re_entrant(tmp_path):
    lock = tmp_path / "training.lock"
    assert not taken_elsewhere(lock)
    signal.alarm(30)  # a lock that is not re-entrant would wait for itself forever: fail instead
    try:
        with exclusive(lock):
            assert taken_elsewhere(lock)
            with exclusive(lock):
                assert taken_elsewhere(lock)
            assert taken_elsewhere(lock)  # the inner exit does not release the outer hold
    finally:
        signal.alarm(0)
    assert not taken_elsewhere(lock)


@pytest.mark.trains
def test_a_test_that_trains_holds_the_lock(tmp_path_factory):
    assert taken_elsewhere(training_lock(tmp_path_factory))


def test_the_scheduler_puts_every_test_that_trains_in_one_unit():
    from tests.conftest import pytest_xdist_make_scheduler, training_apart_scheduler

    scheduler = training_apart_scheduler()
    split = scheduler.__new__(scheduler)._split_scope  # the scope key is all the scheduler reads of a test id
    for nodeid in (
        "tests/test_faults.py::test_training_resumes_bit_identical_after_a_kill[fp16]",
        "tests/test_e2e_folder.py::test_folder_dataset_runs_the_whole_pipeline",  # marked module-wide
        "tests/test_training_lock.py::test_a_test_that_trains_holds_the_lock",
    ):
        assert split(nodeid) == "trains", nodeid
    alone = "tests/test_faults.py::test_dump_killed_repeatedly_resumes_to_identical_descriptors"
    assert split(alone) == alone
    assert pytest_xdist_make_scheduler(SimpleNamespace(getoption=lambda name: "load"), None) is None
