"""The only way to the teacher: a gate that counts every query, refuses past the budget, and keeps
every answer in a durable store with a ledger, so that no image is ever queried twice.

Layout of a store directory (kept across ``dvc repro`` runs; DVC marks it ``persist``):

- ``meta.json``: which teacher (SHA-256 of its checkpoint) the answers belong to;
- ``chunk-00000.npz``...: answered batches (pool indices + descriptors), each written atomically;
- ``ledger.jsonl``: one line per teacher call, appended after its chunk is on disk.

A different teacher checkpoint gets a fresh store; the old one is moved aside, never deleted.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.io import atomic_write_bytes, save_npz_atomic


class BudgetExceeded(RuntimeError):
    """A teacher call that would pass the query budget; raised before the call is made."""


@dataclass(frozen=True)
class LedgerEntry:
    chunk: str
    count: int
    total: int
    budget: int
    purpose: str
    time: str


class QueryStore:
    """Durable answers of one teacher for one purpose (``train`` or ``test``)."""

    def __init__(self, root: Path, teacher_sha: str, purpose: str):
        self.root = Path(root)
        self.teacher_sha = teacher_sha
        self.purpose = purpose
        self._open()

    # -- opening ---------------------------------------------------------------------------
    def _open(self) -> None:
        meta_path = self.root / "meta.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("teacher_sha256") != self.teacher_sha:
                aside = self.root.with_name(f"{self.root.name}.teacher-{meta.get('teacher_sha256', 'unknown')[:12]}")
                os.replace(self.root, aside)
                print(f"teacher changed: previous answers moved to {aside} (not deleted)")
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".chunk-*.tmp"):  # a write cut off by a kill; its batch is re-sent
            stale.unlink()
        if not meta_path.exists():
            atomic_write_bytes(meta_path, json.dumps(
                {"teacher_sha256": self.teacher_sha, "purpose": self.purpose}, indent=1).encode())
        self._indices: list[np.ndarray] = []
        self._descriptors: list[np.ndarray] = []
        self._chunks = sorted(self.root.glob("chunk-*.npz"))
        for chunk in self._chunks:
            with np.load(chunk) as z:
                self._indices.append(z["indices"])
                self._descriptors.append(z["descriptors"])
        self._reconcile_ledger()

    def _reconcile_ledger(self) -> None:
        """A chunk on disk without its ledger line (killed in between) gets its line now."""
        recorded = {e.chunk for e in self.ledger()}
        total = 0
        for chunk, idx in zip(self._chunks, self._indices):
            total += len(idx)
            if chunk.name not in recorded:
                self._append_ledger(chunk.name, len(idx), total, budget=-1, recovered=True)

    # -- reading ---------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Teacher calls made so far, counted in images."""
        return int(sum(len(i) for i in self._indices))

    def answered(self) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for idx, desc in zip(self._indices, self._descriptors):
            out.update(zip(idx.tolist(), desc))
        return out

    def ledger(self) -> list[LedgerEntry]:
        path = self.root / "ledger.jsonl"
        if not path.exists():
            return []
        entries = []
        for line in path.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                entries.append(LedgerEntry(d["chunk"], d["count"], d["total"], d["budget"], d["purpose"], d["time"]))
        return entries

    # -- writing ---------------------------------------------------------------------------
    def append(self, indices: np.ndarray, descriptors: np.ndarray, budget: int) -> None:
        name = f"chunk-{len(self._chunks):05d}.npz"
        save_npz_atomic(self.root / name, indices=np.asarray(indices, dtype=np.int64),
                        descriptors=np.asarray(descriptors, dtype=np.float32))
        self._chunks.append(self.root / name)
        self._indices.append(np.asarray(indices, dtype=np.int64))
        self._descriptors.append(np.asarray(descriptors, dtype=np.float32))
        self._append_ledger(name, len(indices), self.count, budget)

    def _append_ledger(self, chunk: str, count: int, total: int, budget: int, recovered: bool = False) -> None:
        entry = {"chunk": chunk, "count": count, "total": total, "budget": budget, "purpose": self.purpose,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if recovered:
            entry["recovered"] = True
        with open(self.root / "ledger.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


class QueryGate:
    """Answers descriptor requests from the store, querying the teacher only for unseen images.

    ``teacher`` is a black box: a function from a batch of images to descriptors. The gate never
    calls it for an image the store already holds, nor past ``budget`` images in total.
    """

    def __init__(self, teacher: Callable[[np.ndarray], np.ndarray], store: QueryStore, budget: int,
                 batch_size: int = 256):
        self._teacher = teacher
        self.store = store
        self.budget = budget
        self.batch_size = batch_size

    def describe(self, indices: np.ndarray, images: Callable[[np.ndarray], np.ndarray],
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Descriptors for ``indices`` (in order). ``images(idx)`` loads the images to send."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(np.unique(indices)) != len(indices):
            raise ValueError("duplicate indices in a teacher request: each image is queried once")
        known = self.store.answered()
        missing = np.array([i for i in indices.tolist() if i not in known], dtype=np.int64)
        if self.store.count + len(missing) > self.budget:
            raise BudgetExceeded(
                f"{self.store.purpose} teacher budget is {self.budget} images: {self.store.count} already "
                f"queried, this request needs {len(missing)} more. Nothing was sent to the teacher; raise the "
                f"budget or ask for fewer images"
            )
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            if self.store.count + len(batch) > self.budget:  # re-checked before every single call
                raise BudgetExceeded(f"{self.store.purpose} teacher budget of {self.budget} images reached")
            desc = np.asarray(self._teacher(images(batch)), dtype=np.float32)
            if desc.shape[0] != len(batch):
                raise RuntimeError(f"teacher returned {desc.shape[0]} descriptors for {len(batch)} images")
            self.store.append(batch, desc, self.budget)
            if progress:
                progress(len(batch))
        known = self.store.answered()
        return np.stack([known[i] for i in indices.tolist()]) if len(indices) else np.zeros((0, 0), np.float32)
