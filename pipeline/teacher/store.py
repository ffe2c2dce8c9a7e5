"""A teacher's answers and the ledger of every call made to it, durable and shared.

One folder per teacher identity under the store root (``queries.store``), kept side by side, so
switching teachers A -> B -> A finds A's answers again. Layout of ``<root>/<kind>-<id>/``:

- ``teacher.json``: the identity the answers belong to (kind, weights hash, endpoint, ...);
- ``calls/<call>.keys``: the keys of the images a call sends, written before it is sent;
- ``answers/<call>.npz``: a call's answers (keys + descriptors), each written atomically;
- ``ledger.jsonl``: a ``send`` line before every call, its outcome after;
- ``.lock``: held by the process that is calling the teacher, so that parallel DVC experiments
  and queued runs share the store without sending an image twice; ``lock.json`` says who holds it;
- ``canaries.npz``: a few images answered first, with their pixels, re-asked before every request
  of a served teacher to check that the same model still answers behind its address;
- ``last_call``: when the last call left (any process), so that ``queries.max_qps`` holds across them.

A call's outcome decides whether it was *spent* (it may have reached the teacher and been billed:
answered, failed, invalid, lost) or not (refused with 429/503, rejected with another 4xx, or the
server was unreachable). A ``send`` with no outcome is a call lost to a kill; it is found and
recorded as ``lost`` the next time the store is opened under its lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from filelock import FileLock, Timeout

from pipeline.errors import ArtifactError, TeacherError
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


def _is_entry(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


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
            raise ArtifactError(f"cannot create the teacher's answer store {self.dir}: no permission; set "
                                "queries.store in params.yaml to a folder you can write, e.g. "
                                "~/.cache/derd/teachers") from None
        card = self.dir / "teacher.json"
        if card.exists():
            try:
                stored = json.loads(card.read_text())
            except ValueError:
                stored = None
            if stored != identity:
                raise ArtifactError(f"{card} describes another teacher than the one asked for; the store is damaged: "
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
                raise ArtifactError(f"{path} cannot be read ({type(e).__name__}); the store is damaged: move "
                                    f"{self.dir} aside (its ledger still says what was spent)") from None
            if parts and desc.shape[1:] != parts[0].shape[1:]:
                raise ArtifactError(f"{path} holds {desc.shape[1:]} descriptors where the store's others are "
                                    f"{parts[0].shape[1:]}; the store is damaged: move {self.dir} aside")
            base = sum(len(p) for p in parts)
            for k, key in enumerate(keys.tolist()):
                self._keys.setdefault(key, base + k)
            parts.append(desc)
        self._desc = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        self._call_keys: dict[str, set[bytes]] = {}

    def _read_ledger(self) -> dict[str, Call]:
        calls: dict[str, Call] = {}
        self._torn, self._unterminated = b"", False
        if not self.ledger_path.exists():
            return calls
        lines = self.ledger_path.read_bytes().split(b"\n")
        torn = lines.pop()  # after the last newline: empty unless a write was cut off (or an editor ate it)
        self._unterminated = False
        if torn and _is_entry(torn):  # a complete line without its newline: kept, the newline added on repair
            lines.append(torn)
            torn, self._unterminated = b"", True
        for n, raw in enumerate(lines, 1):
            try:
                e = json.loads(raw)
                if e["event"] == "send":
                    calls[e["call"]] = Call(e["call"], e["purpose"], e["images"], e["time"])
                elif e.get("call") in calls:
                    c = calls[e["call"]]
                    c.outcome, c.seconds, c.detail = e["event"], e.get("seconds"), e.get("detail", "")
            except (ValueError, KeyError, TypeError):
                raise ArtifactError(f"{self.ledger_path}, line {n}: not a ledger entry; the ledger is damaged. "
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
    def locked(self, stall_s: float | None = None, say=None) -> Iterator["AnswerStore"]:
        """Hold the store for one process: reload, repair a torn ledger line, record lost calls.

        While another process holds it, say once who it is (``lock.json``) and wait as long as that
        process shows progress (a ledger line, or taking the lock, within ``stall_s`` seconds); give up
        with a TeacherError when it has shown none for longer. ``stall_s`` None: wait for ever."""
        self._acquire(stall_s, say or (lambda line: print(line, file=sys.stderr, flush=True)))
        try:
            atomic_write_bytes(self.dir / "lock.json", (json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
                 "since": _now()}) + "\n").encode())
            self.refresh()
            self._repair()
            yield self
        finally:
            self._lock.release()

    def _acquire(self, stall_s: float | None, say) -> None:
        try:
            self._lock.acquire(timeout=0)
            return
        except Timeout:
            pass
        started = time.time()
        say(f"waiting for the teacher's store {self.dir}: {self._holder()} holds it")
        while True:
            try:
                self._lock.acquire(timeout=min(1.0, stall_s) if stall_s else 1.0)
                say(f"the teacher's store is free after {time.time() - started:.0f} s of waiting")
                return
            except Timeout:
                pass
            if stall_s is None:
                continue
            quiet = time.time() - self._last_progress()
            if quiet > stall_s and time.time() - started > stall_s:
                raise TeacherError(
                    f"the teacher's store {self.dir} is held by {self._holder()}, which has recorded no call for "
                    f"{quiet:.0f} s, longer than one call may take (queries.timeout_s plus a wait of "
                    "queries.max_backoff_s, twice): it seems stuck. Stop that process (its answers stored so far "
                    "are kept) or let it finish, then rerun this one")

    def _holder(self) -> str:
        try:
            h = json.loads((self.dir / "lock.json").read_text())
            return f"process {h['pid']} on {h['host']} (`{h['command']}`, since {h['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def _last_progress(self) -> float:
        times = [p.stat().st_mtime for p in (self.ledger_path, self.dir / "lock.json") if p.exists()]
        return max(times, default=0.0)

    # -- pacing and canaries (shared by every process using the store) ----------------------------
    def last_call_at(self) -> float:
        """When the last call left, by any process (``time.time()``); -inf if never."""
        try:
            return float((self.dir / "last_call").read_text())
        except (OSError, ValueError):
            return -float("inf")

    def mark_call(self, at: float) -> None:
        (self.dir / "last_call").write_text(repr(at))

    def canaries(self) -> tuple[list[bytes], list[np.ndarray]] | None:
        """The images re-asked to check the teacher's identity: their keys and pixels (None: not chosen yet)."""
        path = self.dir / "canaries.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            keys = z["keys"].tolist()
            pixels = [z[f"pixels_{i}"] for i in range(len(keys))]
        keep = [i for i, k in enumerate(keys) if self.has(k)]
        return ([keys[i] for i in keep], [pixels[i] for i in keep]) if keep else None

    def set_canaries(self, keys: list[bytes], pixels: list[np.ndarray]) -> None:
        """Chosen once per identity: answered images whose pixels are kept to be re-asked."""
        save_npz_atomic(self.dir / "canaries.npz", keys=np.array(keys, dtype="S64"),
                        **{f"pixels_{i}": np.asarray(p, dtype=np.uint8) for i, p in enumerate(pixels)})

    def _repair(self) -> None:
        if self._unterminated:  # the last line is whole, only its newline is missing: nothing is dropped
            with open(self.ledger_path, "ab") as f:
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
            self._unterminated = False
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
