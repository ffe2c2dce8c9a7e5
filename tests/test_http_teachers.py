"""Served teachers over real sockets on 127.0.0.1: how each failure of a service is told apart
(refused and retried after Retry-After, unreachable, cut mid-call, too slow, rejected), the auth
key that is sent but never written anywhere, and protocol answers that are refused."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

from pipeline.errors import BudgetExceeded, TeacherError
from pipeline.teacher.clients import KServeTeacher, MlflowTeacher
from pipeline.teacher.gate import QueryGate
from pipeline.teacher.http import HttpEndpoint
from pipeline.teacher.store import AnswerStore
from tests.http_server import QuietHTTPServer
from tests.test_queries import DIM, describe_pixels, images, inputs, queries

SECRET = "Bearer s3cr3t-token-never-written"


class FakeService:
    """Speaks MLflow's scoring protocol and the Open Inference Protocol; ``script`` is a list of what
    to do with the next requests ("ok", "429", "503", "500", "cut", "slow", "nan", "3d")."""

    def __init__(self, require_auth=False):
        self.script: list[str] = []
        self.requests: list[dict] = []
        self.require_auth = require_auth
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body, headers=()):
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/ping":
                    return self._send(200, b"\n")
                if self.path == "/v2/models/teacher":
                    return self._send(200, {"name": "teacher", "inputs": [{"name": "pixels", "datatype": "UINT8"}]})
                return self._send(404, {"error": f"Model {self.path.rsplit('/', 1)[-1]} not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                service.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
                if self.path == "/v2/repository/index":
                    return self._send(200, [{"name": "teacher"}])
                if service.require_auth and self.headers.get("Authorization") != SECRET:
                    return self._send(401, {"error": "unauthorised"})
                action = service.script.pop(0) if service.script else "ok"
                if action in ("429", "503"):
                    return self._send(int(action), {"error": "busy"}, [("Retry-After", "2")])
                if action == "500":
                    return self._send(500, {"error": "boom"})
                if action == "cut":
                    self.connection.shutdown(2)  # the request was read, then the connection dropped
                    return None
                if action == "slow":
                    time.sleep(1.5)
                if self.path == "/invocations":
                    x = np.asarray(body["inputs"], dtype=np.uint8)
                else:
                    t = body["inputs"][0]
                    assert t["name"] == "pixels" and t["datatype"] == "UINT8"
                    x = np.asarray(t["data"], dtype=np.uint8).reshape(t["shape"])
                d = describe_pixels(x)
                if action == "nan":
                    d[0, 0] = np.nan
                if action == "3d":
                    d = d[:, :3]
                if self.path == "/invocations":
                    return self._send(
                        200, {"predictions": [[float(v) if np.isfinite(v) else "NaN" for v in row] for row in d]}
                    )
                return self._send(
                    200,
                    {
                        "outputs": [
                            {"name": "d", "shape": list(d.shape), "datatype": "FP32", "data": d.ravel().tolist()}
                        ]
                    },
                )

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def infer_requests(self):
        return [r for r in self.requests if r["path"] in ("/invocations", "/v2/models/teacher/infer")]


@pytest.fixture
def service():
    s = FakeService()
    yield s
    s.httpd.shutdown()


def served_gate(tmp_path, client, waits=None, **kw):
    store = AnswerStore(tmp_path / "store", {"kind": "served", "url": client.endpoint})
    sleep = waits.append if waits is not None else (lambda s: None)
    return QueryGate(client, store, queries(**kw), DIM, sleep=sleep)


def mlflow_client(url, timeout=5.0, **auth):
    return MlflowTeacher(url, HttpEndpoint(url, timeout, **auth))


@pytest.mark.parametrize("protocol", ["mlflow", "kserve-v2"])
def test_answers_through_each_protocol(tmp_path, service, protocol):
    http = HttpEndpoint(service.url, 5)
    client = mlflow_client(service.url) if protocol == "mlflow" else KServeTeacher(service.url, "teacher", http)
    client.check()
    x = images(7)
    out, report = served_gate(tmp_path, client).describe(inputs(x), "train", 7)
    assert np.allclose(out, describe_pixels(x)) and report.sent == 7 and len(service.infer_requests()) == 3


def test_refusals_wait_for_retry_after_and_are_not_counted(tmp_path, service):
    service.script = ["429", "503", "ok"]
    waits = []
    g = served_gate(tmp_path, mlflow_client(service.url), waits, call_batch=10)
    _, report = g.describe(inputs(images(4)), "train", 4)
    assert waits == [2.0, 2.0] and report.spent == 4
    s = g.store.summary()
    assert s["requests"] == 3 == len(service.infer_requests()) and s["images_refused"] == 8


def test_a_cut_connection_counts_and_a_server_error_too(tmp_path, service):
    service.script = ["cut", "500"]
    g = served_gate(tmp_path, mlflow_client(service.url), call_batch=10)
    with pytest.raises(BudgetExceeded, match="1 call.*failed"):
        g.describe(inputs(images(4)), "train", 4)
    g2 = served_gate(tmp_path, mlflow_client(service.url), call_batch=10, extra_calls=8)
    _, report = g2.describe(inputs(images(4)), "train", 4)
    assert report.spent == 12 and g2.store.summary()["images_failed"] == 8
    assert g2.store.summary()["requests"] == len(service.infer_requests()) == 3


def test_a_slow_answer_times_out_and_counts(tmp_path, service):
    service.script = ["slow"]
    g = served_gate(tmp_path, mlflow_client(service.url, timeout=0.5), call_batch=10, extra_calls=4)
    _, report = g.describe(inputs(images(4)), "train", 4)
    assert report.spent == 8
    assert [c.detail for c in g.store.calls()][0].startswith("no answer from")


def test_an_unreachable_server_is_named_with_the_fix(tmp_path, service):
    url = service.url
    service.httpd.shutdown()
    service.httpd.server_close()
    with pytest.raises(TeacherError, match=f"no MLflow scoring server answers at {url}.*derd serve-teacher"):
        mlflow_client(url).check()
    g = served_gate(tmp_path, mlflow_client(url), retries=2)
    with pytest.raises(TeacherError, match=f"cannot reach the teacher at {url}/invocations.*is the server running"):
        g.describe(inputs(images(2)), "train", 2)
    assert g.store.summary()["requests"] == 0 and g.store.summary()["images_spent"] == 0


@pytest.mark.parametrize(
    "answer, message",
    [("nan", "answered descriptors with NaN"), ("3d", "answered 3-d descriptors, but teacher.dim is 8")],
)
def test_unusable_answers_name_the_endpoint_and_keep_what_was_stored(tmp_path, service, answer, message):
    g = served_gate(tmp_path, mlflow_client(service.url), call_batch=2)
    g.describe(inputs(images(2)), "train", 4)
    service.script = [answer]
    with pytest.raises(TeacherError, match=f"the teacher at {service.url}/invocations {message}"):
        gate = served_gate(tmp_path, mlflow_client(service.url), call_batch=2, verify=0)
        gate.describe(inputs(images(4)), "train", 4)
    assert len(AnswerStore(tmp_path / "store", {"kind": "served", "url": f"{service.url}/invocations"})) == 2


def test_a_wrong_model_name_lists_the_served_ones(service):
    with pytest.raises(
        TeacherError, match="no usable model 'teachr'.*HTTP 404.*check teacher.model .the served models: teacher"
    ):
        KServeTeacher(service.url, "teachr", HttpEndpoint(service.url, 5)).check()


def test_the_auth_key_is_sent_but_never_written(tmp_path, monkeypatch):
    service = FakeService(require_auth=True)
    try:
        with pytest.raises(
            TeacherError, match="teacher.auth_env names the environment variable TEACHER_KEY, which is not set"
        ):
            HttpEndpoint(service.url, 5, auth_env="TEACHER_KEY")
        monkeypatch.setenv("TEACHER_KEY", "Bearer wrong")
        g = served_gate(tmp_path, mlflow_client(service.url, auth_env="TEACHER_KEY"))
        with pytest.raises(TeacherError, match="rejected the call: HTTP 401"):
            g.describe(inputs(images(2)), "train", 2)
        monkeypatch.setenv("TEACHER_KEY", SECRET)
        g = served_gate(tmp_path, mlflow_client(service.url, auth_env="TEACHER_KEY"))
        g.describe(inputs(images(2)), "train", 2)
        assert service.infer_requests()[-1]["auth"] == SECRET
        written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
        assert b"s3cr3t" not in written and b"wrong" not in written
        assert g.store.summary()["images_rejected"] == 2  # the 401 is on the ledger, not counted against the budget
    finally:
        service.httpd.shutdown()


def test_tls_certificates_are_verified(tmp_path):
    """A service with a certificate nobody vouches for is refused, not silently trusted."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    service = FakeService()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    service.httpd.socket = ctx.wrap_socket(service.httpd.socket, server_side=True)
    url = service.url.replace("http://", "https://")
    try:
        g = served_gate(tmp_path, mlflow_client(url))
        with pytest.raises(TeacherError, match="nothing could be sent to the teacher.*TLS verification failed"):
            g.describe(inputs(images(2)), "train", 2)
        assert service.infer_requests() == [] and g.store.summary()["requests"] == 0  # never a request
    finally:
        service.httpd.shutdown()
