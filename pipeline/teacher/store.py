"""A teacher's answers and the ledger of every call made to it, durable and shared.

One folder per teacher identity under the store root (``queries.store``), kept side by side, so
switching teachers A -> B -> A finds A's answers again. Layout of ``<root>/<kind>-<id>/``:

- ``teacher.json``: the identity the answers belong to (kind, weights hash, endpoint, ...);
- ``calls/<call>.keys``: the keys of the images a call sends, written before it is sent;
- ``answers/<call>.npz``: a call's answers (keys + descriptors), each written atomically;
- ``ledger.jsonl``: a ``send`` line before every call, its outcome after;
- ``.lock``: held by the process that is calling the teacher, so that parallel DVC experiments
  and queued runs share the store without sending an image twice.

A call's outcome decides whether it was *spent* (it may have reached the teacher and been billed:
answered, failed, invalid, lost) or not (refused with 429/503, rejected with another 4xx, or the
server was unreachable). A ``send`` with no outcome is a call lost to a kill; it is found and
recorded as ``lost`` the next time the store is opened under its lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from filelock import FileLock

from pipeline.errors import DatasetError
from pipeline.io import atomic_write_bytes, save_npz_atomic

SPENT = ("answered", "failed", "invalid", "lost")       # may have reached the teacher: counted against budgets
NOT_SPENT = ("refused", "rejected", "unreachable")      # refused by HTTP status, or never reached it
NOT_A_REQUEST = ("unreachable",)                        # no request reached the server


def identity_id(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Call:
    id: str
    purpose: str
    images: int
    time: str
    outcome: str | None = None   # None: in flight (another process holds the lock) or lost
    seconds: float | None = None
    detail: str = ""

    @property
    def spent(self) -> bool:
        return self.outcome is None or self.outcome in SPENT


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class AnswerStore:
    """The answers and ledger of one teacher (see the module docstring)."""

    def __init__(self, root: Path, identity: dict):
        self.identity = identity
        self.id = identity_id(identity)
        self.dir = Path(root) / f"{identity.get('kind', 'teacher')}-{self.id}"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise DatasetError(f"cannot create the teacher's answer store {self.dir}: no permission; set "
                               f"queries.store in params.yaml to a folder you can write, e.g. ~/.cache/derd/teachers") from None
        card = self.dir / "teacher.json"
        if card.exists():
            try:
                stored = json.loads(card.read_text())
            except ValueError:
                stored = None
            if stored != identity:
                raise DatasetError(f"{card} describes another teacher than the one asked for; the store is damaged: "
                                   f"move {self.dir} aside")
        else:
            atomic_write_bytes(card, (json.dumps(identity, indent=1, sort_keys=True) + "\n").encode())
        self._lock = FileLock(str(self.dir / ".lock"))
        self.refresh()

    # -- reading ------------------------------------------------------------------------------
    @property
    def ledger_path(self) -> Path:
        return self.dir / "ledger.jsonl"

    def refresh(self) -> None:
        """Re-read the ledger and answers (another process may have added some)."""
        self._calls = self._read_ledger()
        self._keys: dict[bytes, int] = {}
        parts = []
        for path in sorted((self.dir / "answers").glob("*.npz")):
            try:
                with np.load(path) as z:
                    keys, desc = z["keys"], z["descriptors"]
            except Exception as e:  # answers are written atomically: a bad file was damaged afterwards
                raise DatasetError(f"{path} cannot be read ({type(e).__name__}); the store is damaged: move "
                                   f"{self.dir} aside (its ledger still says what was spent)") from None
            if parts and desc.shape[1:] != parts[0].shape[1:]:
                raise DatasetError(f"{path} holds {desc.shape[1:]} descriptors where the store's others are "
                                   f"{parts[0].shape[1:]}; the store is damaged: move {self.dir} aside")
            base = sum(len(p) for p in parts)
            for k, key in enumerate(keys.tolist()):
                self._keys.setdefault(key, base + k)
            parts.append(desc)
        self._desc = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        self._call_keys: dict[str, set[bytes]] = {}

    def _read_ledger(self) -> dict[str, Call]:
        calls: dict[str, Call] = {}
        self._torn = b""
        if not self.ledger_path.exists():
            return calls
        lines = self.ledger_path.read_bytes().split(b"\n")
        torn = lines.pop()  # after the last newline: empty unless a write was cut off
        for n, raw in enumerate(lines, 1):
            try:
                e = json.loads(raw)
                if e["event"] == "send":
                    calls[e["call"]] = Call(e["call"], e["purpose"], e["images"], e["time"])
                elif e.get("call") in calls:
                    c = calls[e["call"]]
                    c.outcome, c.seconds, c.detail = e["event"], e.get("seconds"), e.get("detail", "")
            except (ValueError, KeyError, TypeError):
                raise DatasetError(f"{self.ledger_path}, line {n}: not a ledger entry; the ledger is damaged. "
                                   "Keep a copy and remove that line to go on") from None
        self._torn = torn
        return calls

    def calls(self, purpose: str | None = None) -> list[Call]:
        return [c for c in self._calls.values() if purpose is None or c.purpose == purpose]

    def has(self, key: bytes) -> bool:
        return key in self._keys

    def answers(self, keys: Iterable[bytes]) -> np.ndarray:
        return self._desc[[self._keys[k] for k in keys]]

    def __len__(self) -> int:
        return len(self._keys)

    def call_keys(self, call_id: str) -> set[bytes]:
        if call_id not in self._call_keys:
            path = self.dir / "calls" / f"{call_id}.keys"
            self._call_keys[call_id] = set(path.read_bytes().split()) if path.exists() else set()
        return self._call_keys[call_id]

    def spent_on(self, keys: set[bytes], purpose: str) -> int:
        """Images sent for ``keys`` by spent calls of ``purpose``: what those images have cost so far."""
        return sum(len(self.call_keys(c.id) & keys) for c in self.calls(purpose) if c.spent)

    def summary(self, purpose: str | None = None) -> dict:
        calls = self.calls(purpose)
        by = {o: sum(c.images for c in calls if c.outcome == o) for o in SPENT + NOT_SPENT}
        by["lost"] += sum(c.images for c in calls if c.outcome is None)
        answered = [c for c in calls if c.outcome == "answered" and c.seconds]
        seconds = sum(c.seconds for c in answered)
        return {"requests": sum(1 for c in calls if c.outcome not in NOT_A_REQUEST),
                "images_sent": sum(c.images for c in calls if c.outcome not in NOT_A_REQUEST),
                "images_spent": sum(c.images for c in calls if c.spent),
                **{f"images_{o}": n for o, n in by.items()},
                "answered_seconds": round(seconds, 3),
                "answered_images_per_second": round(sum(c.images for c in answered) / seconds, 1) if seconds else None}

    # -- writing (only while holding the lock) ----------------------------------------------------
    @contextmanager
    def locked(self, timeout: float = -1) -> Iterator["AnswerStore"]:
        """Hold the store for one process: reload, repair a torn ledger line, record lost calls."""
        with self._lock.acquire(timeout=timeout):
            self.refresh()
            self._repair()
            yield self

    def _repair(self) -> None:
        if self._torn:  # a line cut off by a kill: its call was never sent (send lines are fsynced first)
            data = self.ledger_path.read_bytes()
            with open(self.ledger_path, "r+b") as f:
                f.truncate(len(data) - len(self._torn))
            self._append({"event": "repaired", "detail": f"dropped a torn last line ({len(self._torn)} bytes)"})
            self._torn = b""
        for c in self.calls():
            if c.outcome is None:  # no process but us can be mid-call: this one was cut off
                if (self.dir / "answers" / f"{c.id}.npz").exists():
                    self._outcome(c, "answered", "recovered: answers stored before the kill")
                else:
                    self._outcome(c, "lost", "the process was killed during this call")

    def begin(self, keys: list[bytes], purpose: str) -> Call:
        """Record a call before it is sent: its keys, then its ``send`` line (both on disk first)."""
        call = Call(f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}", purpose, len(keys), _now())
        atomic_write_bytes(self.dir / "calls" / f"{call.id}.keys", b"\n".join(keys) + b"\n")
        self._append({"event": "send", "call": call.id, "purpose": purpose, "images": call.images, "time": call.time})
        self._calls[call.id] = call
        return call

    def answered(self, call: Call, keys: list[bytes], descriptors: np.ndarray, seconds: float) -> None:
        save_npz_atomic(self.dir / "answers" / f"{call.id}.npz", keys=np.array(keys, dtype="S64"),
                        descriptors=np.asarray(descriptors, dtype=np.float32))
        base = len(self._desc)
        self._desc = descriptors.astype(np.float32) if not base else np.concatenate([self._desc, descriptors])
        for k, key in enumerate(keys):
            self._keys.setdefault(key, base + k)
        call.seconds = seconds
        self._outcome(call, "answered")

    def verified(self, call: Call, seconds: float) -> None:
        """A re-asked stored image: the answer is compared, not stored."""
        call.seconds = seconds
        self._outcome(call, "answered", "verification: compared with the stored answer, not stored")

    def failed(self, call: Call, outcome: str, detail: str) -> None:
        if outcome not in SPENT + NOT_SPENT:
            raise ValueError(f"unknown call outcome {outcome!r}")
        self._outcome(call, outcome, detail)

    def _outcome(self, call: Call, outcome: str, detail: str = "") -> None:
        call.outcome, call.detail = outcome, detail
        entry = {"event": outcome, "call": call.id, "time": _now()}
        if call.seconds is not None:
            entry["seconds"] = round(call.seconds, 4)
        if detail:
            entry["detail"] = detail
        self._append(entry)

    def _append(self, entry: dict) -> None:
        with open(self.ledger_path, "ab") as f:
            f.write((json.dumps(entry) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
