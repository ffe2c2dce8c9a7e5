"""The only way to a teacher: a gate that sends only images whose answers are not stored, counts
every call in the ledger before it is sent, and refuses a call that would pass the budget.

The budget bounds calls *made* for the images of one request (the training subset, or the test
set): images sent by earlier spent calls for those images (answered, lost to a kill, timed out)
count against it, images answered for other requests do not. ``queries.extra_calls`` lets the gate
replace lost calls beyond the budget; it is 0 by default, so that no image is paid for twice. An image
sent twice counts twice for good: the allowance that paid for it must stay set.

A served teacher's identity is its address, and a service can swap its model behind it: before every
request, a few fixed images answered first (the store's canaries) are re-asked and compared, and a
different answer stops the run before anything new is stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from pipeline.errors import BudgetExceeded, TeacherChanged, TeacherError
from pipeline.params import QueriesParams
from pipeline.teacher.inputs import TeacherInputs
from pipeline.teacher.outcomes import CallError
from pipeline.teacher.store import AnswerStore

NORM_TOLERANCE = 1e-3  # |1 - ||d|||: the teacher's descriptors must be L2-normalised
CHANGED_TOLERANCE = 1e-3  # max |stored - new| for a re-asked image before the teacher counts as changed


class TeacherClient(Protocol):
    endpoint: str  # where the calls go, for messages (never holds a secret)
    remote: bool  # a service whose model can change behind it: re-ask a few stored images

    def __call__(self, pixels) -> np.ndarray: ...


@dataclass
class RequestReport:
    purpose: str
    images: int  # images asked for (duplicates included)
    unique: int  # distinct inputs among them
    sent: int  # images sent by this request's answered calls
    stored_before: int  # distinct inputs already answered
    spent: int  # images sent for these inputs, ever, by spent calls of this purpose
    budget: int


class QueryGate:
    def __init__(
        self,
        client: TeacherClient,
        store: AnswerStore,
        queries: QueriesParams,
        dim: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.client, self.store, self.q, self.dim = client, store, queries, dim
        self._sleep, self._clock = sleep, clock
        self._last_call = -float("inf")

    def describe(
        self, inputs: TeacherInputs, purpose: str, budget: int, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, RequestReport]:
        """Descriptors of ``inputs`` in order, asking the teacher only for inputs never answered."""
        keys = inputs.keys()
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        with self.store.locked(stall_s=self.stall_s):
            stored = [k for k in first if self.store.has(k)]
            missing = [k for k in first if not self.store.has(k)]
            wanted = set(first)
            spent = self.store.spent_on(wanted, purpose)
            self._check_budget(purpose, budget, spent, len(missing), wanted)
            if self.client.remote and self.q.verify:
                self._check_identity(inputs, stored, first)
            # photos of different sizes go one per request to a service; a teacher built here takes many
            size = self.q.call_batch if inputs.same_size or not self.client.remote else 1
            sent = 0
            for start in range(0, len(missing), size):
                batch = missing[start : start + size]
                spent = self._call(
                    inputs,
                    [first[k] for k in batch],
                    batch,
                    purpose,
                    budget,
                    spent,
                    wanted,
                    remaining=len(missing) - start,
                    sent_before=start > 0,
                )
                sent += len(batch)
                if progress:
                    progress(len(batch))
            descriptors = self.store.answers(keys) if keys else np.zeros((0, self.dim), np.float32)
        report = RequestReport(purpose, len(keys), len(first), sent, len(stored), spent, budget)
        return descriptors, report

    # -- one call, with retries --------------------------------------------------------------
    def _call(
        self,
        inputs: TeacherInputs,
        idx: list[int],
        keys: list[bytes],
        purpose: str,
        budget: int,
        spent: int,
        wanted: set[bytes],
        remaining: int,
        sent_before: bool,
    ) -> int:
        """Send one batch until it is answered; returns the images spent on ``wanted`` so far.
        ``remaining``: the request's images not answered yet, this batch's included: an attempt is made
        only while all of them still fit in the budget, so a retry never eats the room of later batches."""
        attempt = 0
        while True:
            self._check_budget(purpose, budget, spent, remaining, wanted, sent_before=sent_before or attempt > 0)
            pixels = inputs.batch(idx)
            self._pace()
            call = self.store.begin(keys, purpose)
            started = time.perf_counter()
            try:
                answer = self.client(pixels)
            except CallError as exc:
                self.store.failed(call, exc.outcome, exc.detail)
                if call.spent:
                    spent += len(keys)
                attempt += 1
                if not exc.retry or attempt > self.q.retries:
                    raise TeacherError(self._failure_message(exc, attempt)) from None
                self._back_off(exc, attempt)
                continue
            except BaseException as exc:  # an interrupt or a bug mid-call: it may have been answered
                self.store.failed(call, "failed", f"{type(exc).__name__} during the call")
                raise
            seconds = time.perf_counter() - started
            problem = self._check_answer(answer, len(keys))
            if problem:
                self.store.failed(call, "invalid", problem)
                raise TeacherError(
                    f"the teacher at {self.client.endpoint} {problem}. Nothing of this call was "
                    f"stored; the {len(self.store)} answers stored before it are kept "
                    f"({self.store.dir})"
                )
            self.store.answered(call, keys, np.asarray(answer, dtype=np.float32), seconds)
            if self.client.remote and self.q.verify and self.store.canaries() is None:
                self._choose_canaries(inputs, idx, keys)
            return spent + len(keys)

    @property
    def stall_s(self) -> float:
        """How long a process holding the store may go without recording a call before one waiting for it
        gives up: one attempt's deadline and the longest wait between attempts, twice."""
        return 2 * (self.q.timeout_s + self.q.max_backoff_s)

    def _back_off(self, exc: CallError, attempt: int) -> None:
        """Wait before retry ``attempt``: what the server asked (Retry-After), else 0.5 s doubling; never
        longer than queries.max_backoff_s, whatever the server asked."""
        wait = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** (attempt - 1)
        self._sleep(min(self.q.max_backoff_s, max(0.0, wait)))

    def _pace(self) -> None:
        """At most queries.max_qps calls a second, counting the calls of every process sharing the store
        (each records when its last call left)."""
        if self.q.max_qps:
            last = max(self._last_call, self.store.last_call_at())
            wait = min(last + 1.0 / self.q.max_qps - self._clock(), 1.0 / self.q.max_qps)
            if wait > 0:
                self._sleep(wait)
        self._last_call = self._clock()
        self.store.mark_call(self._last_call)

    def _check_answer(self, answer, n: int) -> str:
        a = np.asarray(answer)
        if a.ndim != 2 or a.shape[0] != n:
            return f"answered {a.shape} for {n} images (expected ({n}, {self.dim}))"
        if a.shape[1] != self.dim:
            return (
                f"answered {a.shape[1]}-d descriptors, but teacher.dim is {self.dim}: set teacher.dim: "
                f"{a.shape[1]} if this is the right teacher"
            )
        if not np.isfinite(a).all():
            return "answered descriptors with NaN or infinite values"
        norms = np.linalg.norm(a.astype(np.float64), axis=1)
        if np.abs(norms - 1).max() > NORM_TOLERANCE:
            return (
                f"answered descriptors that are not L2-normalised (norms {norms.min():.4g} to {norms.max():.4g}); "
                "a retrieval teacher must return unit vectors: normalise them in the service"
            )
        return ""

    def _failure_message(self, exc: CallError, attempts: int) -> str:
        where = self.client.endpoint
        if exc.outcome == "unreachable" and not exc.retry:
            return f"nothing could be sent to the teacher at {where}: {exc.detail}"
        if exc.outcome == "unreachable":
            return (
                f"cannot reach the teacher at {where} ({exc.detail}) after {attempts} attempts: is the server "
                "running? (`derd serve-teacher` serves the default teacher); teacher.url sets the address"
            )
        if exc.outcome == "invalid":
            return (
                f"the teacher at {where} {exc.detail}. Nothing of this call was stored; the "
                f"{len(self.store)} answers stored before it are kept ({self.store.dir})"
            )
        if exc.outcome == "rejected":
            return (
                f"the teacher at {where} rejected the call: {exc.detail}. Check teacher.model (a 404), the key "
                "in the variable teacher.auth_env names (a 401 or 403), or teacher.dim and the images' size"
            )
        return f"the teacher at {where} failed {attempts} times, the last: {exc.detail}"

    # -- budget and identity -------------------------------------------------------------------
    def _check_budget(
        self, purpose: str, budget: int, spent: int, needed: int, wanted: set[bytes], sent_before: bool = False
    ) -> None:
        limit = budget + self.q.extra_calls
        if needed == 0 or spent + needed <= limit:  # nothing to send is never refused
            return

        sent = [(c, self.store.call_keys(c.id) & wanted) for c in self.store.calls(purpose) if c.spent]
        lost = [(c, m) for c, m in ((c, {k for k in keys if not self.store.has(k)}) for c, keys in sent) if m]
        repaid = spent - len(set().union(*(keys for _, keys in sent)))  # sends beyond the first of each image
        reasons = []
        if lost:  # spent calls whose images have no stored answer (an answers file moved out too)
            outcomes = sorted({c.outcome if c.outcome != "answered" else "answered but moved out" for c, _ in lost})
            reasons.append(
                f"{len(set().union(*(m for _, m in lost)))} of those images went in {len(lost)} call(s) whose "
                f"answers the store does not hold ({', '.join(outcomes)}, see {self.store.ledger_path})"
            )
        if repaid > 0:
            reasons.append(
                f"{repaid} earlier send(s) repeated images already sent (paid again: a retry or a replacement), "
                "and count against the budget for good"
            )
        why = (
            f"; {'; '.join(reasons)}. To send what is missing, allow it with queries.extra_calls: "
            f"{spent + needed - budget}"
            if reasons
            else "; raise the budget or ask for fewer images"
        )
        raise BudgetExceeded(
            f"{purpose} teacher budget is {budget} images (+ queries.extra_calls {self.q.extra_calls}): "
            f"{spent} already sent for these images and {needed} more needed. Nothing "
            f"{'more ' if sent_before else ''}was sent{why}"
        )

    def _choose_canaries(self, inputs: TeacherInputs, idx: list[int], keys: list[bytes]) -> None:
        """Keep the pixels of a few answered images, once per identity, to re-ask before later requests."""
        n = self.q.verify if inputs.same_size else 1  # photos go one per request: one is re-asked
        self.store.set_canaries(keys[:n], list(inputs.batch(idx[:n])))

    def _check_identity(self, inputs: TeacherInputs, stored: list[bytes], first: dict[bytes, int]) -> None:
        """Re-ask the store's canaries (a store from before canaries adopts stored images of this request):
        a service may have swapped its model behind the same URL."""
        canaries = self.store.canaries()
        if canaries is None:
            if not stored:
                return  # nothing answered yet: the first answered call chooses the canaries
            keys = stored[: self.q.verify] if inputs.same_size else stored[:1]
            self._verify(keys, list(inputs.batch([first[k] for k in keys])))
            self._choose_canaries(inputs, [first[k] for k in keys], keys)
            return
        keys, pixels = canaries
        if len({p.shape for p in pixels}) > 1:  # photos: one per request
            keys, pixels = keys[:1], pixels[:1]
        self._verify(keys, pixels)

    def _verify(self, keys: list[bytes], pixels: list[np.ndarray]) -> None:
        """Re-ask stored images and compare: a different answer raises TeacherChanged."""
        batch = np.stack(pixels)  # one shape: same-size images, or a single photo
        attempt = 0
        while True:  # retried as any call is (429, 5xx, unreachable), with the same backoff
            self._pace()
            call = self.store.begin(keys, "verify")
            started = time.perf_counter()
            try:
                answer = np.asarray(self.client(batch), dtype=np.float32)
                break
            except CallError as exc:
                self.store.failed(call, exc.outcome, exc.detail)
                attempt += 1
                if not exc.retry or attempt > self.q.retries:
                    raise TeacherError(self._failure_message(exc, attempt)) from None
                self._back_off(exc, attempt)
            except BaseException as exc:  # an interrupt or a bug mid-call
                self.store.failed(call, "failed", f"{type(exc).__name__} during the call")
                raise
        problem = self._check_answer(answer, len(keys))
        if problem:
            self.store.failed(call, "invalid", problem)
            raise TeacherError(f"the teacher at {self.client.endpoint} {problem}")
        self.store.verified(call, time.perf_counter() - started)
        diff = float(np.abs(answer - self.store.answers(keys)).max())
        if diff > CHANGED_TOLERANCE:
            raise TeacherChanged(
                f"the teacher at {self.client.endpoint} now answers {len(keys)} stored image(s) differently "
                f"(max difference {diff:.3g}): it is not the model whose {len(self.store)} answers are stored in "
                f"{self.store.dir}. Those answers are kept and nothing new was stored. If the new model is "
                "intended, give it its own store: change teacher.url or teacher.model (e.g. a versioned name), or "
                "start a fresh queries.store"
            )
