"""How one teacher call can fail, as its client reports it to the gate, which records it in the
ledger and decides whether to try again.

The distinction that matters is whether the call may have reached the teacher (and been billed):
a refusal (HTTP 429, 503), a rejection (another 4xx) or an unreachable server did not; a timeout,
a dropped connection after sending, a server error or a failed command may have.
"""

from __future__ import annotations


class CallError(Exception):
    outcome = "failed"
    retry = True

    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after


class CallRefused(CallError):
    """HTTP 429 or 503: the service declined the call for now; ``retry_after`` seconds if it said."""

    outcome = "refused"


class CallUnreachable(CallError):
    """No connection could be made: nothing was sent."""

    outcome = "unreachable"


class CallNeverSent(CallUnreachable):
    """Nothing could be sent and trying again cannot help (a certificate nobody vouches for, a command
    that cannot be started)."""

    retry = False


class CallRejected(CallError):
    """Another 4xx (wrong model name, bad key, bad input): trying again cannot help."""

    outcome = "rejected"
    retry = False


class CallFailed(CallError):
    """Timed out, dropped after sending, server error, command failed: it may have been answered."""

    outcome = "failed"
