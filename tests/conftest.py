import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests may run beside other work on a 2-core machine: keep torch to one thread."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def finished_repo(tmp_path_factory):
    """One run of the tiny pipeline (every stage's command, recorded in dvc.lock), shared by every
    test that only reads its outputs; tests that change something work on a ``clone`` of it."""
    from tests.pipeline_copy import TINY, copy_repo, run_pipeline

    repo = copy_repo(tmp_path_factory.mktemp("finished") / "repo", TINY)
    run_pipeline(repo)
    return repo


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
