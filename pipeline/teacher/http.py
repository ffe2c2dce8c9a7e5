"""HTTP for served teachers: one attempt per call (the gate retries and records each), TLS verified,
an auth header read from an environment variable and never written anywhere, and every failure
classified by whether the request may have reached the teacher.

A misbehaving service cannot get past it: no redirect is followed (the key goes to the configured
origin only, and only that origin's answers are stored under its identity); the key is scrubbed from
every text a failure carries, whatever the server echoes; a request has one deadline for connecting,
sending and receiving the whole body (``queries.timeout_s``), so a server that drips its answer cannot
hold a call past it; ``Retry-After`` is read safely, as seconds or an HTTP date.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import os
import re
import threading
import time
import urllib.parse

import requests
import urllib3

from pipeline.errors import TeacherError
from pipeline.teacher.outcomes import CallFailed, CallNeverSent, CallRefused, CallRejected, CallUnreachable

BODY_CHARS = 200  # of an error response, in a failure's detail (after the key is scrubbed)
# Connecting must give up before the whole request's deadline does: a connection never made is
# "unreachable" (nothing sent, not counted), which only requests' ConnectTimeout can tell.
CONNECT_SHARE = 0.9
REDACTED = "<the key from teacher.auth_env>"
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x1f\x7f]")  # CR, LF and other control characters


class CallInvalid(CallFailed):
    """A 200 answer that is not what the protocol promises: counted, not retried."""

    outcome = "invalid"
    retry = False


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date; None when the
    value is neither (or not a number: ``nan``). Infinite or huge values are returned as they are: the
    gate caps every wait at ``queries.max_backoff_s``."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as RFC 9110 dates always are
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """requests wraps urllib3's MaxRetryError, whose ``reason`` says whether a connection was made."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def check_url(url: str) -> str:
    """``url`` without its trailing slash, if requests can send to it; else a TeacherError with the fix."""
    base = url.rstrip("/")
    try:
        parts = urllib.parse.urlsplit(base)
        parts.port  # noqa: B018 -- raises for a port out of range
        requests.Request("GET", base + "/").prepare()
        problem = (
            "it must start with http:// or https://"
            if parts.scheme not in ("http", "https")
            else "it names no host"
            if not parts.hostname
            else "it holds a user name or password: pass a key with teacher.auth_env instead"
            if parts.username
            else ""
        )
    except (ValueError, requests.exceptions.RequestException) as exc:
        problem = str(exc)
    if problem:
        raise TeacherError(
            f"teacher.url {base!r} cannot be used ({problem}); set teacher.url to the service's "
            "base address, e.g. http://127.0.0.1:5001 or https://teacher.example.org"
        ) from None
    return base


class HttpEndpoint:
    def __init__(self, base_url: str, timeout: float, auth_env: str = "", auth_header: str = "Authorization"):
        self.base = check_url(base_url)
        self.timeout = timeout
        self.session = self._new_session()
        self._headers = {"Content-Type": "application/json"}
        self._secrets: list[str] = []
        if auth_env:
            value = os.environ.get(auth_env)
            if not value:
                raise TeacherError(
                    f"teacher.auth_env names the environment variable {auth_env}, which is not set: "
                    f"export {auth_env}='<the key or token the service expects>'"
                )
            if _BAD_HEADER_VALUE.search(value) or value != value.strip():
                raise TeacherError(
                    f"the key in the environment variable {auth_env} (teacher.auth_env) holds a line "
                    "break, a control character or surrounding spaces, which cannot go in an HTTP "
                    f"header: export {auth_env} again without them "
                    "(e.g. \"$(tr -d '\\r\\n' < keyfile)\")"
                )
            self._headers[auth_header] = value
            self._secrets = _forms(value)

    @staticmethod
    def _new_session() -> requests.Session:
        return requests.Session()  # verify=True: TLS certificates are checked; allow_redirects=False on each request

    def scrub(self, text: str) -> str:
        """``text`` without the key, in any of the forms a server may echo it."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _body(self, r: requests.Response) -> str:
        """The start of an error response's body, on one line, the key scrubbed before it is cut."""
        try:
            text = r.content[:20000].decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 -- the body itself broke: say so, not why
            return "(the body could not be read)"
        return self.scrub(" ".join(text.split()))[:BODY_CHARS]

    def request(self, method: str, path: str, json_body=None, expect_json: bool = True):
        url = self.base + path
        r = self._send(method, url, json_body)
        if r.is_redirect or 300 <= r.status_code < 400:
            where = self.scrub(r.headers.get("Location", "nowhere said"))
            raise CallRejected(
                f"HTTP {r.status_code} from {url}: the service redirects to {where}, and redirects are "
                "not followed (the key goes only to teacher.url, and only its answers are stored "
                "under its name); set teacher.url to the address that answers"
            )
        if r.status_code in (429, 503):
            raise CallRefused(
                f"HTTP {r.status_code} from {url}: {self._body(r)}", retry_after(r.headers.get("Retry-After"))
            )
        if 400 <= r.status_code < 500:
            raise CallRejected(f"HTTP {r.status_code} from {url}: {self._body(r)}")
        if r.status_code >= 500:
            raise CallFailed(
                f"HTTP {r.status_code} from {url}: {self._body(r)}", retry_after(r.headers.get("Retry-After"))
            )
        if not expect_json:
            return r.text
        try:
            return r.json()
        except (ValueError, RecursionError):
            kind = self.scrub(r.headers.get("Content-Type", "no Content-Type").split(";")[0])[:100]
            raise CallInvalid(
                f"answered HTTP {r.status_code} from {url} with a body that is not JSON ({kind}, "
                f"{len(r.content)} bytes); is teacher.url the service's base address and "
                "teacher.kind its protocol?"
            ) from None

    def _send(self, method: str, url: str, json_body) -> requests.Response:
        """One request under one deadline: connect, send and the whole body within ``timeout`` seconds.
        requests bounds each socket read only, so the request runs in a thread that is given up on (and
        its connection with it) at the deadline; a dripping server cannot hold the call longer."""
        session, box = self.session, {}
        connect_s = CONNECT_SHARE * self.timeout

        def attempt():
            try:
                box["response"] = session.request(
                    method,
                    url,
                    json=json_body,
                    headers=self._headers,
                    timeout=(connect_s, self.timeout),
                    allow_redirects=False,
                )
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread below
                box["error"] = exc

        worker = threading.Thread(target=attempt, name="derd-teacher-request", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():  # the late answer, if it ever comes, is dropped with its connection
            self.session = self._new_session()
            raise CallFailed(
                f"no answer from {url} within queries.timeout_s = {self.timeout:g} s (the whole "
                "request: connecting, sending and receiving the body)"
            )
        if "response" in box:
            return box["response"]
        exc = box["error"]
        if isinstance(exc, requests.exceptions.SSLError):
            raise CallNeverSent(
                f"TLS verification failed for {url} ({type(exc).__name__}); fix the server's "
                "certificate or point REQUESTS_CA_BUNDLE at its CA"
            ) from None
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            raise CallUnreachable(f"no connection to {url} within {connect_s:g} s") from None
        if isinstance(exc, requests.exceptions.Timeout):
            raise CallFailed(f"no answer from {url} within queries.timeout_s = {self.timeout:g} s") from None
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _never_connected(exc):
                raise CallUnreachable(f"connection to {url} refused") from None
            raise CallFailed(f"the connection to {url} broke during the call ({type(exc).__name__})") from None
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            raise CallFailed(
                f"the answer from {url} was cut off or garbled while it was received "
                f"({type(exc).__name__}); the call may have been billed"
            ) from None
        if isinstance(
            exc,
            (
                requests.exceptions.InvalidURL,
                requests.exceptions.InvalidHeader,
                requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema,
            ),
        ):
            raise CallNeverSent(
                f"the request to {url} cannot be made ({type(exc).__name__}: {self.scrub(str(exc))}); fix teacher.url"
            ) from None
        raise exc


def _forms(secret: str) -> list[str]:
    """The key as a server may echo it: whole, its parts (the token after "Bearer"), URL- or JSON-quoted;
    longest first, so that a part is never left of a whole."""
    parts = {secret} | {p for p in secret.split() if len(p) >= 8}
    forms = set(parts)
    for p in parts:
        forms |= {urllib.parse.quote(p, safe=""), urllib.parse.quote_plus(p), json.dumps(p)[1:-1]}
    return sorted((f for f in forms if f), key=len, reverse=True)
