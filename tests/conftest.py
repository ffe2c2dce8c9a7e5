import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests may run beside other work on a 2-core machine: keep torch to one thread."""
    import torch

    torch.set_num_threads(1)
