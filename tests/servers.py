"""Real teacher servers on 127.0.0.1 for the tests: ``mlflow models serve`` (through ``derd
serve-teacher``) and MLServer (the Open Inference Protocol, with its MLflow runtime). Each one's own
count of the requests it received is read from the server itself: uvicorn's access log, MLServer's
Prometheus metrics."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.pipeline_copy import BIN, REPO, env

MLSERVER_SITE = REPO / ".venv" / "mlserver"
_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")  # the ports the kernel hands out (Linux)


def outside_ephemeral_range() -> range:
    """Ports the kernel never hands out on its own: the larger of the stretches below its ephemeral range
    (``ip_local_port_range``; at most 12,000 ports under it, none under 1024) and above it, if it holds
    1,000 ports or more; empty where that range cannot be read or neither stretch does."""
    try:
        low, high = map(int, _RANGE.read_text().split()[:2])
    except (OSError, ValueError):
        return range(0)
    below, above = range(max(1024, low - 12000), low), range(high + 1, 65536)
    larger = max(below, above, key=len)
    return larger if len(larger) >= 1000 else range(0)


def free_ports(n: int = 1) -> list[int]:
    """``n`` different free ports for servers that bind them later, drawn outside the kernel's ephemeral
    range: a port the kernel hands out (``bind(0)``) can go to any outgoing connection before the server
    binds it (seen under ``-n 3``: "address already in use"); one outside that range only goes to whoever
    asks for it by number. Each is held until all are drawn, so no two are the same."""
    ports = outside_ephemeral_range()
    rng = random.Random()  # seeded from the OS: workers started together draw differently
    held: list[socket.socket] = []
    try:
        for _ in range(200 * n):
            if len(held) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.choice(ports) if ports else 0))  # 0: the kernel's choice, as a last resort
            except OSError:
                s.close()
                continue
            held.append(s)
        if len(held) < n:
            raise RuntimeError(f"no {n} free ports found in {ports}")
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)  # a refused connection answers at once: a short poll is cheap
    raise RuntimeError(f"the server did not come up at {url}:\n{log.read_text()[-3000:]}")


class Served:
    """A server process (its own session, so that killing it kills its workers too)."""

    def __init__(self, argv: list[str], cwd: Path, log: Path, ready_url: str, extra_env: dict | None = None):
        self.log = log
        self.handle = open(log, "ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env(), **(extra_env or {})},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(ready_url, self.proc, log)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.handle.close()


class MlflowServer(Served):
    """``derd serve-teacher`` in ``repo``: the repository's teacher behind ``mlflow models serve``."""

    def __init__(self, repo: Path, port: int | None = None, log: Path | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [str(BIN / "derd"), "serve-teacher", "--port", str(self.port)],
            repo,
            log or repo.parent / f"mlflow-serve-{self.port}.log",
            f"{self.url}/ping",
        )

    def requests(self) -> int:
        """Teacher calls the server logged (``POST /invocations``), over every process that wrote the log."""
        return len(re.findall(r'"POST /invocations HTTP/1.1"', self.log.read_text()))


class MLServer(Served):
    """MLServer with its MLflow runtime serving ``models`` (name -> MLflow model folder)."""

    def __init__(self, folder: Path, models: dict[str, Path]):
        self.port, grpc, metrics = free_ports(3)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": self.port,
                    "grpc_port": grpc,
                    "metrics_port": metrics,
                    "parallel_workers": 0,
                    "load_models_at_startup": True,
                }
            )
        )
        for name, path in models.items():
            (folder / name).mkdir(exist_ok=True)
            (folder / name / "model-settings.json").write_text(
                json.dumps(
                    {"name": name, "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": {"uri": str(path)}}
                )
            )
        if not (MLSERVER_SITE / "mlserver").is_dir():
            raise RuntimeError(
                f"MLServer is not installed in {MLSERVER_SITE}: run ./scripts/setup.sh unit (make test-unit)"
            )
        self.url, self.metrics_url = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{metrics}/metrics"
        code = "import sys; from mlserver.cli.main import main; sys.argv = ['mlserver', 'start', sys.argv[1]]; main()"
        super().__init__(
            [sys.executable, "-c", code, str(folder)],
            folder,
            folder / "mlserver.log",
            f"{self.url}/v2/health/ready",
            {"PYTHONPATH": f"{MLSERVER_SITE}{os.pathsep}{REPO}"},
        )
        for name in models:
            wait_for(f"{self.url}/v2/models/{name}/ready", self.proc, self.log)

    def requests(self, model: str) -> int:
        """Inference requests MLServer itself counted for ``model`` (answered or failed)."""
        text = requests.get(self.metrics_url, timeout=5).text
        total = 0
        for kind in ("success", "failure"):
            m = re.search(rf'model_infer_request_{kind}_total{{model="{model}"[^}}]*}} ([0-9.e+]+)', text)
            total += int(float(m.group(1))) if m else 0
        return total
