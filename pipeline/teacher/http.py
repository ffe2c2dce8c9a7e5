"""HTTP for served teachers: one attempt per call (the gate retries and records each), TLS verified,
an auth header read from an environment variable and never written anywhere, and every failure
classified by whether the request may have reached the teacher."""
from __future__ import annotations

import email.utils
import os
import time

import requests
import urllib3

from pipeline.errors import TeacherError
from pipeline.teacher.outcomes import CallFailed, CallNeverSent, CallRefused, CallRejected, CallUnreachable


class CallInvalid(CallFailed):
    """A 200 answer that is not what the protocol promises: counted, not retried."""
    outcome = "invalid"
    retry = False


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """requests wraps urllib3's MaxRetryError, whose ``reason`` says whether a connection was made."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class HttpEndpoint:
    def __init__(self, base_url: str, timeout: float, auth_env: str = "", auth_header: str = "Authorization"):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()  # verify=True: TLS certificates are checked
        self._headers = {"Content-Type": "application/json"}
        if auth_env:
            value = os.environ.get(auth_env)
            if not value:
                raise TeacherError(f"teacher.auth_env names the environment variable {auth_env}, which is not set: "
                                   f"export {auth_env}='<the key or token the service expects>'")
            self._headers[auth_header] = value

    def request(self, method: str, path: str, json_body=None, expect_json: bool = True):
        url = self.base + path
        try:
            r = self.session.request(method, url, json=json_body, headers=self._headers, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise CallNeverSent(f"TLS verification failed for {url} ({type(exc).__name__}); fix the server's "
                                "certificate or point REQUESTS_CA_BUNDLE at its CA") from None
        except requests.exceptions.ConnectTimeout:
            raise CallUnreachable(f"no connection to {url} within {self.timeout:g} s") from None
        except requests.exceptions.Timeout:
            raise CallFailed(f"no answer from {url} within queries.timeout_s = {self.timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise CallUnreachable(f"connection to {url} refused") from None
            raise CallFailed(f"the connection to {url} broke during the call ({type(exc).__name__})") from None
        if r.status_code in (429, 503):
            raise CallRefused(f"HTTP {r.status_code} from {url}", retry_after(r.headers.get("Retry-After")))
        if 400 <= r.status_code < 500:
            raise CallRejected(f"HTTP {r.status_code} from {url}: {r.text[:300]}")
        if r.status_code >= 500:
            raise CallFailed(f"HTTP {r.status_code} from {url}: {r.text[:300]}",
                             retry_after(r.headers.get("Retry-After")))
        if not expect_json:
            return r.text
        try:
            return r.json()
        except ValueError:
            raise CallInvalid(f"answered HTTP {r.status_code} from {url} with a body that is not JSON") from None
