"""A misbehaving teacher service on 127.0.0.1 for the tests: MLflow's scoring protocol and the Open
Inference Protocol, with a menu of faults played one per request from ``script``.

Every loop in it is bounded (a drip stops after ``DRIP_S`` seconds, a held call after ``HOLD_S``), it
binds 127.0.0.1 only, and it counts each teacher call it receives (``calls``), with the headers it
came with, so that a test can compare the ledger with the server's own count."""

from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

import numpy as np

from tests.http_server import QuietHTTPServer
from tests.test_queries import describe_pixels

DRIP_S = 4.0  # a dripping answer gives up after this long
HOLD_S = 20.0  # a held call is answered after this long at most (or when released)
SLOW_S = 5.0  # a slow answer comes after this long

FAULTS = {
    "ok": "a correct answer",
    "drip": "a correct answer, a few bytes every 0.2 s",
    "truncated": "a body cut off before its Content-Length",
    "429": "HTTP 429 with Retry-After in seconds",
    "429-date": "HTTP 429 with Retry-After as an HTTP date",
    "503-absurd": "HTTP 503 with Retry-After: 1e12",
    "503-inf": "HTTP 503 with Retry-After: inf",
    "500": "HTTP 500",
    "redirect-same": "307 to another path on the same origin",
    "redirect-cross": "307 to another origin",
    "redirect-loop": "307 to itself",
    "html": "HTTP 200 with an HTML page",
    "nan": "NaN in the descriptors",
    "ragged": "rows of different lengths",
    "strings": "descriptors as words",
    "records": "pandas-style records",
    "dim": "descriptors of the wrong size",
    "echo401": "HTTP 401 whose body echoes the key",
    "hold": "holds the call until released",
    "slow": f"a correct answer after {SLOW_S:g} s",
}


class FaultServer:
    def __init__(self, redirect_to: str = ""):
        self.script: list[str] = []
        self.calls: list[dict] = []  # teacher calls received: path, headers, time
        self.other: list[dict] = []  # every other request
        self.salt = 0  # the model behind the address: change it to swap the model
        self.redirect_to = redirect_to  # the other origin of "redirect-cross"
        self.meta: object = {"name": "teacher", "inputs": [{"name": "pixels", "datatype": "UINT8"}]}
        self.release = threading.Event()
        self.received = threading.Event()  # set when a teacher call arrives
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body, headers=(), content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.other.append({"path": self.path, "headers": dict(self.headers)})
                if self.path == "/ping":
                    return self._send(200, b"\n")
                if self.path == "/v2/models/teacher":
                    return self._send(200, server.meta)
                return self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path not in ("/invocations", "/v2/models/teacher/infer"):
                    server.other.append({"path": self.path, "headers": dict(self.headers)})
                    return self._send(404, {"error": "not found"})
                server.calls.append({"path": self.path, "headers": dict(self.headers), "time": time.time()})
                server.received.set()
                action = server.script.pop(0) if server.script else "ok"
                return self._answer(action, body)

            def _answer(self, action, body):
                if action in ("429", "429-date", "503-absurd", "503-inf"):
                    after = {
                        "429": "1",
                        "429-date": formatdate(time.time() + 3600, usegmt=True),
                        "503-absurd": "1e12",
                        "503-inf": "inf",
                    }[action]
                    return self._send(int(action[:3]), {"error": "busy"}, [("Retry-After", after)])
                if action == "500":
                    return self._send(500, {"error": "boom"})
                if action.startswith("redirect"):
                    port = self.server.server_address[1]
                    to = {
                        "redirect-same": f"http://127.0.0.1:{port}/elsewhere{self.path}",
                        "redirect-cross": f"{server.redirect_to}{self.path}",
                        "redirect-loop": f"http://127.0.0.1:{port}{self.path}",
                    }[action]
                    return self._send(307, b"", [("Location", to)])
                if action == "echo401":
                    return self._send(
                        401, {"error": f"bad key {self.headers.get('X-Api-Key')} {self.headers.get('Authorization')}"}
                    )
                if action == "html":
                    return self._send(200, b"<html><body>Sign in</body></html>", content_type="text/html")
                if action == "hold":
                    server.release.wait(HOLD_S)
                if action == "slow":
                    time.sleep(SLOW_S)
                kserve = self.path != "/invocations"
                if kserve:
                    t = body["inputs"][0]
                    x = np.asarray(t["data"], dtype=np.uint8).reshape(t["shape"])
                else:
                    x = np.asarray(body["inputs"], dtype=np.uint8)
                d = describe_pixels(x, server.salt).tolist()
                if action == "nan":
                    d[0][0] = float("nan")
                elif action == "ragged":
                    d[0] = d[0][:-1]
                elif action == "strings":
                    d = [["high"] * len(r) for r in d]
                elif action == "records":
                    d = [{str(j): v for j, v in enumerate(r)} for r in d]
                elif action == "dim":
                    d = [r[:3] for r in d]
                if kserve and action not in ("ragged", "strings", "records"):
                    flat = np.asarray(d, dtype=np.float32)
                    out = {
                        "outputs": [
                            {
                                "name": "d",
                                "shape": list(flat.shape),
                                "datatype": "FP32",
                                "data": [float(v) if np.isfinite(v) else "NaN" for v in flat.ravel()],
                            }
                        ]
                    }
                elif kserve:
                    out = {"outputs": [{"name": "d", "shape": [len(d), 8], "datatype": "FP32", "data": d}]}
                else:
                    out = {"predictions": d}
                data = json.dumps(out).encode()  # NaN as JSON's non-standard NaN, as Python writes it
                if action == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return None
                if action == "drip":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    deadline = time.time() + DRIP_S
                    try:
                        for i in range(0, len(data), 4):
                            self.wfile.write(data[i : i + 4])
                            self.wfile.flush()
                            if time.time() > deadline:
                                break
                            time.sleep(0.2)
                    except OSError:  # the client gave up
                        pass
                    return None
                return self._send(200, out)

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
