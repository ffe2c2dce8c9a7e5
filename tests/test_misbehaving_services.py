"""The black box holds when the service misbehaves (issue 18): a model swapped behind the address,
redirects and keys that would leak, answers that drip, time out or never come, broken answers and
URLs, a ledger whose last line lost its newline, and a rate limit shared by processes. Each test
drives the gate and the clients against the fault server of ``tests/fault_server.py`` on 127.0.0.1."""

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import BudgetExceeded, DerdError, TeacherChanged, TeacherError
from pipeline.teacher.clients import KServeTeacher, MlflowTeacher
from pipeline.teacher.gate import QueryGate
from pipeline.teacher.http import HttpEndpoint, retry_after
from pipeline.teacher.store import AnswerStore
from tests.fault_server import FaultServer
from tests.test_queries import DIM, CountingTeacher, describe_pixels, images, inputs, queries

REPO = Path(__file__).resolve().parents[1]
KEY = "k3y-Th4t-Must-Never-Be-Written-0123456789"


@pytest.fixture
def server():
    s = FaultServer()
    yield s
    s.close()


def client(url, kind="mlflow", timeout=5.0, **auth):
    http = HttpEndpoint(url, timeout, **auth)
    return MlflowTeacher(url, http) if kind == "mlflow" else KServeTeacher(url, "teacher", http)


def served_gate(root, c, waits=None, sleep=None, **kw):
    """A gate that records its waits in ``waits`` (not waiting), or waits with ``sleep``, or not at all."""
    store = AnswerStore(root / "store", {"kind": "served", "url": c.endpoint})
    return QueryGate(
        c, store, queries(**kw), DIM, sleep=sleep or (waits.append if waits is not None else (lambda s: None))
    )


def ledger_lines(store):
    if not store.ledger_path.exists():
        return []
    return [json.loads(line) for line in store.ledger_path.read_text().splitlines()]


def written(root) -> bytes:
    return b"".join(p.read_bytes() for p in Path(root).rglob("*") if p.is_file())


# -- 1. a swapped model ------------------------------------------------------------------------------
def test_a_swapped_model_is_caught_before_a_request_with_nothing_stored(tmp_path, server):
    """The dump answered by model A; the service swaps to model B; the test set (nothing of it stored)
    must not be answered by B under A's identity."""
    pool, test_set = images(6, seed=1), images(5, seed=2)
    served_gate(tmp_path, client(server.url), call_batch=3).describe(inputs(pool), "train", 6)
    server.salt = 1  # model B behind the same URL
    before = len(server.calls)
    g = served_gate(tmp_path, client(server.url), call_batch=3)
    with pytest.raises(TeacherChanged, match="now answers 2 stored image.*nothing new was stored"):
        g.describe(inputs(test_set), "test", 5)
    assert len(server.calls) == before + 1  # the canaries' re-ask, and nothing else
    assert len(g.store) == 6 and not any(g.store.has(k) for k in inputs(test_set).keys())
    server.salt = 0  # model A is back: the same canaries pass and the test set is answered by A
    out, _ = served_gate(tmp_path, client(server.url), call_batch=3).describe(inputs(test_set), "test", 5)
    assert np.allclose(out, describe_pixels(test_set))


# -- 2. the key ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["redirect-cross", "redirect-same", "redirect-loop"])
def test_redirects_are_not_followed_and_the_key_goes_to_the_configured_origin_only(tmp_path, monkeypatch, fault):
    other = FaultServer()
    s = FaultServer(redirect_to=other.url)
    try:
        monkeypatch.setenv("TEACHER_KEY", KEY)
        c = client(s.url, auth_env="TEACHER_KEY", auth_header="X-Api-Key")
        g = served_gate(tmp_path, c)
        s.script = [fault]
        with pytest.raises(
            TeacherError, match=r"rejected the call: HTTP 307 .*redirects to http://127\.0\.0\.1.*not followed"
        ):
            g.describe(inputs(images(2)), "train", 2)
        assert other.calls == [] and other.other == []  # the other origin never saw the key, nor anything
        assert len(s.calls) == 1 and g.store.summary()["requests"] == 1  # one POST, one call on the ledger
        assert g.store.summary()["images_rejected"] == 2 and len(g.store) == 0
        assert KEY.encode() not in written(tmp_path)
    finally:
        s.close()
        other.close()


def test_a_key_with_a_line_break_is_refused_without_showing_it(tmp_path, monkeypatch, server, capfd):
    monkeypatch.setenv("TEACHER_KEY", KEY + "\r\n")
    with pytest.raises(TeacherError, match="TEACHER_KEY .*holds a line break") as info:
        served_gate(tmp_path, client(server.url, auth_env="TEACHER_KEY")).describe(inputs(images(2)), "train", 2)
    assert KEY not in str(info.value) and KEY not in "".join(capfd.readouterr())
    assert server.calls == [] and KEY.encode() not in written(tmp_path)


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
def test_a_key_echoed_by_the_server_is_scrubbed_from_messages_and_the_ledger(tmp_path, monkeypatch, server, header):
    monkeypatch.setenv("TEACHER_KEY", f"Bearer {KEY}" if header == "Authorization" else KEY)
    g = served_gate(tmp_path, client(server.url, auth_env="TEACHER_KEY", auth_header=header))
    server.script = ["echo401"]
    with pytest.raises(TeacherError, match="HTTP 401.*bad key .*<the key from teacher.auth_env>") as info:
        g.describe(inputs(images(2)), "train", 2)
    assert server.calls[0]["headers"][header].endswith(KEY)  # it was sent
    assert KEY not in str(info.value) and KEY.encode() not in written(tmp_path)
    assert g.store.summary()["images_rejected"] == 2


# -- 3. time -------------------------------------------------------------------------------------------
def test_a_dripping_answer_is_cut_at_the_whole_request_deadline(tmp_path, server):
    server.script = ["drip"]
    g = served_gate(tmp_path, client(server.url, timeout=1.0))
    started = time.monotonic()
    with pytest.raises(BudgetExceeded, match="1 call.*failed"):
        g.describe(inputs(images(2)), "train", 2)
    assert time.monotonic() - started < 2.5  # the server would drip for 4 s
    assert [c.outcome for c in g.store.calls()] == ["failed"]
    assert g.store.calls()[0].detail.startswith("no answer from") and len(server.calls) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="a full listen backlog drops new connections on Linux")
def test_a_connection_never_made_is_unreachable_not_spent(tmp_path):
    """A host that drops the connection attempt (a firewall): nothing was sent, so the call is
    unreachable (not counted, retried), not a failed call given up at the request's deadline."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fill = []
    for _ in range(3):  # fill the backlog: the kernel drops further SYNs, connect() hangs
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fill.append(f)
    try:
        g = served_gate(tmp_path, client(f"http://127.0.0.1:{port}", timeout=0.5), retries=1)
        with pytest.raises(TeacherError, match="cannot reach the teacher"):
            g.describe(inputs(images(2)), "train", 2)
        assert [c.outcome for c in g.store.calls()] == ["unreachable", "unreachable"]
        assert g.store.summary()["images_spent"] == 0
    finally:
        for f in fill:
            f.close()
        listener.close()


@pytest.mark.parametrize("fault", ["503-absurd", "503-inf", "429-date"])
def test_retry_after_is_read_safely_and_capped_by_max_backoff(tmp_path, server, fault):
    server.script = [fault]
    waits = []
    out, _ = served_gate(tmp_path, client(server.url), waits, max_backoff_s=2).describe(inputs(images(2)), "train", 2)
    assert waits == [2.0] and np.allclose(out, describe_pixels(images(2)))


def test_retry_after_forms():
    assert retry_after("7") == 7.0 and retry_after(" 1.5 ") == 1.5 and retry_after("-3") == 0.0
    assert retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=784111767.0) == 10.0
    assert retry_after("Sun, 06 Nov 1994 08:49:37 -0000", now=784111767.0) == 10.0
    assert retry_after("nan") is None and retry_after("soon") is None and retry_after("") is None
    assert retry_after("inf") == float("inf")  # the gate caps it


HOLDER = """
import sys, time
from pipeline.teacher.store import AnswerStore
store = AnswerStore(sys.argv[1], {"kind": "served", "url": sys.argv[2]})
with store.locked():
    print("held", flush=True)
    time.sleep(30)
"""


def test_waiting_for_the_stores_lock_says_who_holds_it_and_gives_up(tmp_path, server, capfd):
    c = client(server.url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "store"), c.endpoint],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        g = served_gate(tmp_path, c, timeout_s=0.5, max_backoff_s=0.25)  # a stuck holder: 1.5 s without a call
        box = {}

        def run():
            try:
                g.describe(inputs(images(2)), "train", 2)
            except Exception as exc:  # noqa: BLE001
                box["error"] = exc

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(15)
        assert not t.is_alive(), "still waiting for the lock after 15 s"
        assert isinstance(box.get("error"), TeacherError)
        assert f"held by process {holder.pid}" in str(box["error"]) and "seems stuck" in str(box["error"])
        assert f"process {holder.pid} on" in capfd.readouterr().err  # said while waiting
        assert server.calls == []
    finally:
        holder.kill()
        holder.wait()


# -- 4. broken answers and URLs --------------------------------------------------------------------
BROKEN_ANSWERS = [
    ("ragged", "invalid", "ragged"),
    ("strings", "invalid", "not all numbers"),
    ("records", "invalid", "as records"),
    ("html", "invalid", "not JSON (text/html"),
    ("nan", "invalid", "NaN"),
    ("dim", "invalid", "set teacher.dim: 3"),
    ("truncated", "failed", "cut off"),
    ("500", "failed", "HTTP 500"),
]


# records are MLflow's pandas output: a fault only an MLflow server can make
@pytest.mark.parametrize(
    "kind, fault, outcome, message",
    [
        (kind, *case)
        for kind in ("mlflow", "kserve-v2")
        for case in BROKEN_ANSWERS
        if not (kind == "kserve-v2" and case[0] == "records")
    ],
)
def test_a_broken_answer_is_one_line_naming_the_endpoint_and_counted(tmp_path, server, kind, fault, outcome, message):
    c = client(server.url, kind)
    c.check()
    server.script = [fault]
    g = served_gate(tmp_path, c, retries=0)
    with pytest.raises(DerdError) as info:
        g.describe(inputs(images(2)), "train", 2)
    text = str(info.value)
    assert "\n" not in text and c.endpoint in text and message in text
    assert [x.outcome for x in g.store.calls()] == [outcome] and len(g.store) == 0
    assert g.store.summary()["images_spent"] == 2 and g.store.summary()["requests"] == len(server.calls) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://[::1)", "http://", "ftp://127.0.0.1:5001"])
def test_a_url_that_cannot_be_parsed_is_one_line_naming_it(tmp_path, url):
    with pytest.raises(TeacherError, match="teacher.url .* cannot be used .*set teacher.url"):
        served_gate(tmp_path, client(url)).describe(inputs(images(2)), "train", 2)


def test_a_kserve_answer_echoing_the_key_is_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", KEY)
    c = client("http://127.0.0.1:9", "kserve-v2", auth_env="TEACHER_KEY", auth_header="X-Api-Key")
    answers = [{"outputs": [{"shape": [KEY], "data": [1.0]}]}, {"outputs": [{"shape": [float("inf")], "data": [1.0]}]}]
    for i, answer in enumerate(answers):
        c.http.request = lambda *a, answer=answer, **kw: answer
        with pytest.raises(TeacherError) as info:
            served_gate(tmp_path / str(i), c, verify=0).describe(inputs(images(2)), "train", 2)
        assert KEY not in str(info.value) and "\n" not in str(info.value) and "outputs" in str(info.value)
    c.http.request = lambda *a, **kw: [{"name": KEY}]
    assert KEY not in c._served()
    assert KEY.encode() not in written(tmp_path)


@pytest.mark.parametrize("meta", [["teacher"], "teacher", {"inputs": "pixels"}, {"inputs": ["pixels"]}])
def test_kserve_metadata_that_is_not_an_object_is_one_line(server, meta):
    server.meta = meta
    with pytest.raises(TeacherError, match="answered GET /v2/models/teacher with a JSON .* not the model's metadata"):
        client(server.url, "kserve-v2").check()


# -- 5. a ledger line without its newline ------------------------------------------------------------
def test_a_complete_last_line_without_newline_is_kept(tmp_path):
    store = AnswerStore(tmp_path / "store", {"kind": "test"})
    g = QueryGate(CountingTeacher(), store, queries(), DIM, sleep=lambda s: None)
    x = images(4)
    g.describe(inputs(x[:2]), "train", 4)
    # a call of the other two images was lost to a kill, and an editor then saved the ledger without
    # its final newline: the send line is complete
    lost = inputs(x[2:]).keys()
    (store.dir / "calls" / "lost-1.keys").write_bytes(b"\n".join(lost) + b"\n")
    text = store.ledger_path.read_text() + json.dumps(
        {"event": "send", "call": "lost-1", "purpose": "train", "images": 2, "time": "2024-01-01T00:00:00+0000"}
    )
    store.ledger_path.write_text(text)
    t = CountingTeacher()
    g2 = QueryGate(t, AnswerStore(tmp_path / "store", {"kind": "test"}), queries(), DIM, sleep=lambda s: None)
    with pytest.raises(BudgetExceeded, match="2 of those images went in 1 call.*lost.*extra_calls: 2"):
        g2.describe(inputs(x), "train", 4)
    assert t.calls == 0
    events = ledger_lines(g2.store)  # every line parses, the send is kept and recorded as lost
    assert [e["event"] for e in events if e.get("call") == "lost-1"] == ["send", "lost"]
    assert not any(e["event"] == "repaired" for e in events)


def test_a_torn_last_line_is_still_dropped(tmp_path):
    store = AnswerStore(tmp_path / "store", {"kind": "test"})
    QueryGate(CountingTeacher(), store, queries(), DIM, sleep=lambda s: None).describe(inputs(images(2)), "train", 2)
    with open(store.ledger_path, "ab") as f:
        f.write(b'{"event": "send", "call": "x", "purp')
    with AnswerStore(tmp_path / "store", {"kind": "test"}).locked() as s:
        assert [e["event"] for e in ledger_lines(s)][-1] == "repaired"


# -- 6. max_qps across processes ----------------------------------------------------------------------
def test_max_qps_holds_across_processes_sharing_a_store(tmp_path, server):
    """Two stage runs one after the other (each its own gate and store object, as two processes have):
    the second's first call waits for the first's last."""
    for seed in (1, 2):
        gate = served_gate(tmp_path, client(server.url), sleep=time.sleep, max_qps=4, verify=0)
        gate.describe(inputs(images(1, seed=seed)), "train", 1)
    gap = server.calls[1]["time"] - server.calls[0]["time"]
    assert gap >= 0.2, f"calls {gap:.3f} s apart at max_qps 4"


# -- a random sequence of faults over several stage runs ------------------------------------------
SEQUENCE_FAULTS = [
    "ok",
    "ok",
    "drip",
    "truncated",
    "429",
    "429-date",
    "503-absurd",
    "503-inf",
    "500",
    "redirect-same",
    "redirect-cross",
    "redirect-loop",
    "html",
    "nan",
    "ragged",
    "strings",
    "dim",
    "echo401",
    "swap",
]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_sequence_of_faults_over_stage_runs_keeps_every_promise(tmp_path, monkeypatch, capfd, seed):
    """Each step is a stage run (a fresh client, store object and gate) with up to two faults from the
    menu, a model swap among them. After every step: no answer but model A's was returned or stored,
    the ledger counts exactly the requests the server received, the other origin of a redirect saw
    nothing, and the key is in no file of the store, no message and nothing printed."""
    rng = random.Random(seed)
    other = FaultServer()
    s = FaultServer(redirect_to=other.url)
    monkeypatch.setenv("TEACHER_KEY", KEY)
    pool = images(12, seed=10)
    keys = inputs(pool).keys()
    outcomes = []
    try:
        for step in range(8):
            faults = [rng.choice(SEQUENCE_FAULTS) for _ in range(rng.randint(0, 2))] if step else []
            s.salt = 1 if "swap" in faults else 0
            s.script = [f for f in faults if f != "swap"]
            idx = sorted(rng.sample(range(12), rng.randint(1, 6)))
            c = client(s.url, timeout=0.6, auth_env="TEACHER_KEY", auth_header="X-Api-Key")
            g = served_gate(tmp_path, c, call_batch=3, retries=2, extra_calls=1000, max_backoff_s=0.05)
            try:
                out, _ = g.describe(inputs(pool[idx]), rng.choice(["train", "test"]), len(idx))
                assert np.allclose(out, describe_pixels(pool[idx]), atol=1e-6), f"step {step} {faults}: a wrong answer"
                outcomes.append("answered")
            except DerdError as exc:
                assert KEY not in str(exc) and "\n" not in str(exc)
                outcomes.append(type(exc).__name__)
                if "swap" in faults and step and s.script == []:
                    assert isinstance(exc, TeacherChanged), exc  # the swap is caught as such
            store = AnswerStore(tmp_path / "store", {"kind": "served", "url": c.endpoint})
            for i, key in enumerate(keys):  # what is stored is model A's, whatever happened
                if store.has(key):
                    assert np.allclose(store.answers([key]), describe_pixels(pool[i : i + 1]), atol=1e-6), (
                        f"step {step}"
                    )
            assert store.summary()["requests"] == len(s.calls), f"step {step} {faults}: ledger != server"
            assert other.calls == [] and other.other == []
            assert KEY.encode() not in written(tmp_path)
            assert KEY not in "".join(capfd.readouterr())
        assert "answered" in outcomes
    finally:
        s.close()
        other.close()


# -- send is on disk before the request leaves -----------------------------------------------------
CALLER = """
import sys
from pipeline.teacher.clients import MlflowTeacher
from pipeline.teacher.gate import QueryGate
from pipeline.teacher.http import HttpEndpoint
from pipeline.teacher.store import AnswerStore
from tests.test_queries import DIM, images, inputs, queries
url, root = sys.argv[1], sys.argv[2]
c = MlflowTeacher(url, HttpEndpoint(url, 60))
gate = QueryGate(c, AnswerStore(root, {"kind": "served", "url": c.endpoint}), queries(), DIM)
gate.describe(inputs(images(2)), "train", 2)
"""


def test_a_process_killed_while_the_server_holds_its_call_has_it_on_the_ledger(tmp_path, server):
    """Fails if the send line were written after the call: the server holds the call, the caller is killed,
    and the call must be on disk already, then counted as lost (paid for) at the next start."""
    server.script = ["hold"]
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, server.url, str(tmp_path / "store")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.PIPE,
    )
    try:
        assert server.received.wait(30), "the call never reached the server"
        ledgers = list((tmp_path / "store").glob("*/ledger.jsonl"))
        sends = [json.loads(line) for line in ledgers[0].read_text().splitlines()] if ledgers else []
        assert [e["event"] for e in sends] == ["send"] and sends[0]["images"] == 2  # on disk while the call is held
    finally:
        caller.kill()
        caller.wait()
        server.release.set()
    g = served_gate(tmp_path, client(server.url))
    with pytest.raises(BudgetExceeded, match="2 of those images went in 1 call.*lost.*extra_calls: 2"):
        g.describe(inputs(images(2)), "train", 2)
    assert len(server.calls) == 1 == g.store.summary()["requests"]


# -- TLS, whatever the CA variables say -----------------------------------------------------------
def _tls_server(tmp_path):
    import datetime
    import ipaddress
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
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    s = FaultServer()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    s.httpd.socket = ctx.wrap_socket(s.httpd.socket, server_side=True)
    return s, s.url.replace("http://", "https://")


@pytest.mark.parametrize(
    "env, trusted",
    [
        ({}, False),
        ({"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}, False),
        ({"REQUESTS_CA_BUNDLE": "certifi", "CURL_CA_BUNDLE": "certifi"}, False),
        ({"REQUESTS_CA_BUNDLE": "cert"}, True),
        ({"CURL_CA_BUNDLE": "cert"}, True),
    ],
)
def test_tls_is_verified_with_the_ca_variables_unset_and_set(tmp_path, monkeypatch, env, trusted):
    import certifi

    s, url = _tls_server(tmp_path)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, {"certifi": certifi.where(), "cert": str(tmp_path / "cert.pem")}.get(value, value))
    try:
        g = served_gate(tmp_path, client(url))
        if trusted:  # its CA named: answered
            out, _ = g.describe(inputs(images(2)), "train", 2)
            assert np.allclose(out, describe_pixels(images(2))) and len(s.calls) == 1
        else:
            with pytest.raises(TeacherError, match="nothing could be sent to the teacher.*TLS verification failed"):
                g.describe(inputs(images(2)), "train", 2)
            assert s.calls == [] and g.store.summary()["requests"] == 0
    finally:
        s.close()


# -- 7. torchrun: the other ranks wait for rank 0's slow teacher ----------------------------------
def test_ranks_wait_for_a_slow_served_teacher_under_torchrun(tmp_path, server):
    """The served teacher takes 5 s to answer; the collectives of the group the ranks meet on after
    describing time out after 2 s (standing in for the default 10 or 30 minutes). The run completes:
    the other rank waits for rank 0's calls on a group of its own, without a collective timeout."""
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "card.json").write_text(
        json.dumps({"kind": "mlflow", "url": server.url, "dim": DIM, "auth_env": "", "auth_header": "Authorization"})
    )
    server.script = ["slow"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(REPO / "tests/torchrun_teacher.py"),
            str(teacher),
            str(tmp_path / "store"),
            "2",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "rank 0: 2 images answered" in proc.stdout and proc.stdout.count("done") == 2
    assert len(server.calls) == 1


def test_the_ranks_wait_has_no_collective_timeout_in_practice():
    from pipeline.teacher.blackbox import TEACHER_WAIT

    assert TEACHER_WAIT.total_seconds() >= 7 * 24 * 3600
