import ast
import os
from pathlib import Path

import pytest

from tests.locks import exclusive, shared_root, training_lock

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests may run beside other work on a 2-core machine: keep torch to one thread."""
    import torch

    torch.set_num_threads(1)


def training_tests(root: Path = ROOT) -> set[str]:
    """The tests marked ``trains``, read from the sources (``path`` for a whole module, ``path::name`` for
    one test): xdist's controller schedules by test id and never imports the tests, so it reads them here."""
    found = set()
    for path in sorted((root / "tests").glob("test_*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
                if "pytest.mark.trains" in ast.unparse(node.value):
                    found.add(rel)
            elif isinstance(node, ast.FunctionDef) and "pytest.mark.trains" in map(ast.unparse, node.decorator_list):
                found.add(f"{rel}::{node.name}")
    return found


def trains(nodeid: str, marked: set[str]) -> bool:
    path, _, rest = nodeid.partition("::")
    return path in marked or f"{path}::{rest.split('[')[0]}" in marked


def pytest_collection_modifyitems(items):
    """The tests that train go first, led by those that need the shared tiny run (so that the worker that
    trains builds it); the others begin with the long ones (``e2e``) and end with the quick ones, which
    fill both workers' last minutes; within each group, those that do not need the run come first (they
    keep the other worker busy while the run is built). Only the order changes: no test depends on
    another having run."""
    marked = training_tests()
    training, rest = [], []
    for item in items:
        is_marked = item.get_closest_marker("trains") is not None
        if is_marked != trains(item.nodeid, marked):
            raise pytest.UsageError(
                f"{item.nodeid}: mark it with a plain @pytest.mark.trains decorator or "
                "module pytestmark, which the scheduler can read without importing it"
            )
        (training if is_marked else rest).append(item)

    def reads_the_run(item):
        return "finished_repo" in getattr(item, "fixturenames", ())

    def long_first(item):  # e2e before quick; within each, those that do not need the run first
        return 2 * (item.get_closest_marker("e2e") is None) + reads_the_run(item)

    items[:] = sorted(training, key=lambda item: not reads_the_run(item)) + sorted(rest, key=long_first)


def training_apart_scheduler() -> type:
    """xdist's scope scheduler with one unit of work for every test that trains (one worker runs them in
    turn while the others run the rest) and a unit of its own for every other test."""
    from xdist.scheduler import LoadScopeScheduling

    marked = training_tests()

    class TrainingApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "trains" if trains(nodeid, marked) else nodeid

    return TrainingApart


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: a run without the plugin goes on without it
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` (``make test``). xdist's own groups do not reach its scheduler under pytest 9
    (they are written into a test id that pytest 9 no longer reads), so the training tests are grouped here."""
    if config.getoption("dist") != "loadgroup":
        return None
    return training_apart_scheduler()(config, log)


@pytest.fixture(autouse=True)
def one_training_at_a_time(request, tmp_path_factory):
    """Two cores: a test that trains holds the session's training lock, whatever worker runs it."""
    if request.node.get_closest_marker("trains") is None:
        yield
        return
    with exclusive(training_lock(tmp_path_factory)):
        yield


@pytest.fixture(scope="session")
def finished_repo(tmp_path_factory):
    """One run of the tiny pipeline (every stage's command, recorded in dvc.lock), shared by every
    test that only reads its outputs, in every worker; tests that change something work on a ``clone``
    of it. It trains: the first worker that needs it builds it under the training lock (taken before the
    run's own lock, the order every holder of both keeps); a failed build is not tried again."""
    from tests.pipeline_copy import TINY, copy_repo, run_pipeline

    root = shared_root(tmp_path_factory)
    folder, done, failed = root / "finished", root / "finished.done", root / "finished.failed"
    if not done.exists():
        with exclusive(training_lock(tmp_path_factory)), exclusive(root / "finished.lock"):
            if failed.exists():
                pytest.fail(f"the shared tiny run failed to build in another worker:\n{failed.read_text()}")
            if not done.exists():
                try:
                    run_pipeline(copy_repo(folder / "repo", TINY))
                except BaseException as e:
                    failed.write_text(f"{type(e).__name__}: {e}"[-5000:])
                    raise
                done.touch()
    return folder / "repo"


@pytest.fixture(scope="session")
def empty_mlflow_db(finished_repo, tmp_path_factory):
    """The finished run's MLflow database with every record deleted: the schema its migrations made.
    A pipeline copy that starts its store from it skips MLflow's migrations (seconds in every new
    store); ``finished_repo`` itself is the run whose track stage makes a store from nothing."""
    import shutil
    import sqlite3

    db = tmp_path_factory.mktemp("mlflow-schema") / "mlflow.db"
    shutil.copy(finished_repo / "mlflow.db", db)
    with sqlite3.connect(db) as c:  # MLflow adds its Default experiment again when it finds none
        for (table,) in c.execute("select name from sqlite_master where type = 'table'").fetchall():
            if table not in ("alembic_version", "workspaces"):
                c.execute(f'delete from "{table}"')
    return db
