"""The suite's own rule on two cores: tests that train (marker ``trains``) hold one lock across xdist's
workers, so that never two of them train at once; the lock is re-entrant within a worker (the shared run
is built under it, inside a test that already holds it)."""
import subprocess
import sys

import pytest

from tests.conftest import exclusive

PROBE = """
import fcntl, sys
with open(sys.argv[1], "a") as f:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(3)
"""


def taken_elsewhere(path) -> bool:
    return subprocess.run([sys.executable, "-c", PROBE, str(path)]).returncode == 3


def test_the_lock_keeps_other_processes_out_and_is_re_entrant(tmp_path):
    lock = tmp_path / "training.lock"
    assert not taken_elsewhere(lock)
    with exclusive(lock):
        assert taken_elsewhere(lock)
        with exclusive(lock):  # re-entrant: no deadlock, still held
            assert taken_elsewhere(lock)
        assert taken_elsewhere(lock)  # the inner exit does not release the outer hold
    assert not taken_elsewhere(lock)


@pytest.mark.trains
def test_a_test_that_trains_holds_the_lock_and_is_scheduled_with_the_others(request, tmp_path_factory):
    from tests.conftest import shared_root, training_tests, trains

    assert taken_elsewhere(shared_root(tmp_path_factory) / "training.lock")
    marked = training_tests()  # what xdist's scheduler reads: this test, and whole modules marked so
    assert trains(request.node.nodeid, marked) and "tests/test_e2e_folder.py" in marked
    assert trains("tests/test_faults.py::test_training_resumes_bit_identical_after_a_kill[fp16]", marked)
    assert not trains("tests/test_faults.py::test_dump_killed_repeatedly_resumes_to_identical_descriptors", marked)
