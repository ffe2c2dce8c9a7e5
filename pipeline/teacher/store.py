"""A teacher's answers and the ledger of every call made to it, durable and shared.

One folder per teacher identity under the store root (``queries.store``), kept side by side, so
switching teachers A -> B -> A finds A's answers again. Layout of ``<root>/<kind>-<id>/``:

- ``teacher.json``: the identity the answers belong to (kind, weights hash, endpoint, ...);
- ``calls/<call>.keys``: the keys of the images a call sends, written before it is sent;
- ``answers/<call>.npz``: a call's answers (keys + descriptors), each written atomically;
- ``answers.pack.npz``: a copy of the answers of the first answer files (in name order), rewritten
  by the lock holder when many files are not in it, so that opening a store of a million answers
  reads one file rather than thousands; only a copy (removing it costs time, not answers);
- ``ledger.jsonl``: a ``send`` line before every call, its outcome after;
- ``.lock``: held by the process that is calling the teacher, so that parallel DVC experiments
  and queued runs share the store without sending an image twice; ``lock.json`` says who holds it;
- ``canaries.npz``: a few images answered first, with their pixels, re-asked before every request
  of a served teacher to check that the same model still answers behind its address;
- ``last_call``: when the last call left (any process), so that ``queries.max_qps`` holds across them.

A call's outcome decides whether it was *spent* (it may have reached the teacher and been billed:
answered, failed, invalid, lost) or not (refused with 429/503, rejected with another 4xx, or the
server was unreachable). A ``send`` with no outcome (the process was killed, or could not write it) is
found the next time the store is opened under its lock, and recorded as ``answered`` if its answers
were stored, else ``lost``.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import math
import os
import socket
import struct
import sys
import tempfile
import time
import uuid
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from filelock import FileLock, Timeout

from pipeline.errors import ArtifactError, TeacherError
from pipeline.io import atomic_write_bytes, save_npz_atomic

SPENT = ("answered", "failed", "invalid", "lost")  # may have reached the teacher: counted against budgets
NOT_SPENT = ("refused", "rejected", "unreachable")  # refused by HTTP status, or never reached it
NOT_A_REQUEST = ("unreachable",)  # no request reached the server
PACK = "answers.pack.npz"  # a copy of the first answer files' answers: opening reads one file, not thousands
PACK_MIN = 64  # answer files outside the pack before it is written anew (and a quarter of those in it)
BLOCK_BYTES = 64 << 20  # the largest block of answers added after opening


def identity_id(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Call:
    id: str
    purpose: str
    images: int
    time: str
    outcome: str | None = None  # None: in flight (another process holds the lock) or lost
    seconds: float | None = None
    detail: str = ""

    @property
    def spent(self) -> bool:
        return self.outcome is None or self.outcome in SPENT

    def copy(self) -> "Call":
        """Another Call of the same (immutable) field values, without dataclasses.replace's cost (a store
        hands out a copy of every call on each refresh); a field added to Call is copied too."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin


def _is_entry(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


_HEADERS: dict[bytes, tuple] = {}  # .npy headers seen (one per call size): parsed once


def decode_answers(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """An answers file's bytes (``np.savez``: an uncompressed zip of two .npy members), their members
    taken where they lie, checksums verified: a few times faster than ``np.load``, and a store of a
    million answers is thousands of these files. Anything else is read by ``np.load``, from the same
    bytes: whatever fails here is the file's content, never the disk."""
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            start = info.header_offset
            if info.compress_type != zipfile.ZIP_STORED or data[start : start + 4] != b"PK\x03\x04":
                break
            start += 30 + sum(struct.unpack_from("<HH", data, start + 26))  # past the local header
            member = memoryview(data)[start : start + info.file_size]
            if len(member) != info.file_size or zlib.crc32(member) != info.CRC:
                raise zipfile.BadZipFile(f"bad CRC-32 for {info.filename}")
            if bytes(member[6:8]) not in (b"\x01\x00", b"\x02\x00"):  # .npy versions 1.0, 2.0
                break
            size = (
                10 + struct.unpack_from("<H", member, 8)[0]
                if member[6] == 1
                else 12 + struct.unpack_from("<I", member, 8)[0]
            )
            raw = bytes(member[:size])
            if raw not in _HEADERS:
                f = io.BytesIO(raw)
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                _HEADERS[raw] = read(f)
            shape, fortran, dtype = _HEADERS[raw]
            if fortran or dtype.hasobject:
                break
            arrays[info.filename] = np.frombuffer(member, dtype, math.prod(shape), size).reshape(shape)
    if set(arrays) == {"keys.npy", "descriptors.npy"}:
        return arrays["keys.npy"], arrays["descriptors.npy"]
    with np.load(io.BytesIO(data)) as z:
        return z["keys"], z["descriptors"]


_NEVER_THE_STORE = (
    "never move the whole store (its ledger still counts the calls made: the budget they were spent from pays "
    "for none of them again unless queries.extra_calls allows it; a store moved aside takes its ledger, and "
    "the next run would pay for every image again)"
)


def _listed(folder: Path) -> list[str]:
    """A folder's names (none if it is not there): at a million answers, half the time of ``glob``."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ArtifactError(
            f"{folder} is a file, not the folder of the store's answers: move that one file out of the store; "
            f"{_NEVER_THE_STORE}"
        ) from None
    except OSError as e:
        raise ArtifactError(f"{folder} cannot be listed ({e.strerror or e}): give its permissions back") from None


def _put_back(own: Path) -> str:
    """How a store folder found under another teacher's name goes back to its own, ``own``, losing no
    ledger line and no answer: a folder of that name may hold what this one lacks, and the reverse."""
    if not own.exists():
        return f"rename it back to {own}, its own name"
    return (
        f"{own} exists too, so this folder is likely a copy of it: keep both until {own} holds every line of "
        f"this folder's ledger.jsonl and every file of its answers/ and calls/ (copy over what it lacks while "
        f"no run uses either); only then does this folder add nothing, and it can be moved out of the store root"
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class AnswerStore:
    """The answers and ledger of one teacher (see the module docstring)."""

    def __init__(self, root: Path, identity: dict, dim: int | None = None):
        """``dim``: the teacher's descriptor size, which every answer file must have (not part of the identity
        of a teacher built here: its store's name would change); else the identity's, else the first read."""
        self.identity = identity
        given = dim if dim is not None else identity.get("dim")
        self.dim = None if given is None else int(given)
        self.id = identity_id(identity)
        self.dir = Path(root) / f"{identity.get('kind', 'teacher')}-{self.id}"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise ArtifactError(
                f"cannot create the teacher's answer store {self.dir}: no permission; set "
                "queries.store in params.yaml to a folder you can write, e.g. "
                "~/.cache/derd/teachers"
            ) from None
        card = self.dir / "teacher.json"
        if card.exists():
            try:
                stored = json.loads(card.read_text())
            except ValueError:
                stored = None
            except IsADirectoryError:
                raise ArtifactError(
                    f"{card} is a folder: move it out of {self.dir}, and teacher.json is written again from the "
                    f"identity that names the folder; {_NEVER_THE_STORE}"
                ) from None
            except OSError as e:
                raise ArtifactError(
                    f"{card} cannot be read ({e.strerror or e}): give its permissions back; {_NEVER_THE_STORE}"
                ) from None
            if stored != identity:
                raise ArtifactError(self._card_mismatch(card, stored))
        else:
            atomic_write_bytes(card, (json.dumps(identity, indent=1, sort_keys=True) + "\n").encode())
        self._lock = FileLock(str(self.dir / ".lock"))
        self._ledger_seen, self._ledger_lines = b"", 0  # the ledger's whole lines parsed so far
        self._ledger_calls: dict[str, Call] = {}  # the calls they hold
        self._reset()
        self.refresh()

    def _card_mismatch(self, card: Path, stored) -> str:
        """Why ``teacher.json`` does not match, and the fixes that keep every ledger (the folder's name is
        the hash of the identity whose answers it holds)."""
        rewrite = "delete that one file and it is written again from the identity that names the folder"
        if not (isinstance(stored, dict) and identity_id(stored) != self.id):
            return (
                f"{card} is damaged (it does not hold the identity {self.id} that names its folder): {rewrite}; "
                f"{_NEVER_THE_STORE}"
            )
        own = self.dir.parent / f"{stored.get('kind', 'teacher')}-{identity_id(stored)}"
        return (
            f"{card} describes another teacher than the one whose identity names {self.dir}. If the folder came "
            f"from that teacher's store, it holds that teacher's answers: {_put_back(own)}. Only if you "
            f"know that teacher.json alone was edited, {rewrite} (done wrongly, this teacher would be given the "
            f"other's answers). Lose no ledger line: a store whose ledger is gone pays for its images again"
        )

    def _expected_width(self, parts: list[np.ndarray], names: list[str]) -> tuple[tuple | None, str]:
        """The descriptor shape every answer file must have, and where it comes from: the teacher's ``dim``
        where known, else the answers read first (the pack's first file, or the first file)."""
        if self.dim is not None:
            return (self.dim,), "the teacher's descriptor size"
        if parts or self._blocks:
            return (parts[0] if parts else self._blocks[0]).shape[1:], (self._files or names)[0]
        return None, ""

    def _width_mismatch(self, path: Path, got: tuple, width: tuple, width_of: str) -> str:
        if self.dim is not None:
            return (
                f"{path} holds {got} descriptors, not {width}, {width_of}: move that one file out of the store; "
                f"{_NEVER_THE_STORE}"
            )
        return (
            f"{path} holds {got} descriptors where {width_of} holds {width}: one of the two is another teacher's. "
            f"Move out of the store the one whose size is not this teacher's descriptor size (the dim in "
            f"models/teacher/card.json); {_NEVER_THE_STORE}"
        )

    # -- reading ------------------------------------------------------------------------------
    @property
    def ledger_path(self) -> Path:
        return self.dir / "ledger.jsonl"

    def _reset(self) -> None:
        self._files: list[str] = []  # the answer files read, in name order
        self._ranges: dict[str, tuple[int, int]] = {}  # each one's rows
        self._packed = 0  # how many of them the pack holds
        self._keys: dict[bytes, int] = {}  # key -> row of its (first) answer
        self._row_keys: list[np.ndarray] = []  # every row's key, in row order (to write a pack)
        self._blocks: list[np.ndarray] = []  # the rows, in blocks: adding rows never copies those held
        self._starts: list[int] = []  # the first row of each block
        self._rows = 0
        self._call_keys: dict[str, set[bytes]] = {}

    def refresh(self) -> None:
        """Re-read the ledger, and the answers another process may have added. Answer files are written
        once, atomically, under names that sort by time: the files already read are kept, unless one has
        gone or a new one sorts before them, and then every file is read again. Reading every file
        starts from the pack (``answers.pack.npz``) when it holds the first of them. Either way a key
        keeps the first answer read."""
        self._calls = self._read_ledger()
        names = sorted(n for n in _listed(self.dir / "answers") if n.endswith(".npz") and not n.startswith("."))
        if names[: len(self._files)] != self._files:
            self._reset()
        keys, parts = ([], []) if self._files else self._read_pack(names)
        done = len(self._files) if self._files else self._packed
        row = self._rows + sum(len(k) for k in keys)
        width, width_of = self._expected_width(parts, names)
        for name in names[done:]:
            path = self.dir / "answers" / name
            try:
                data = path.read_bytes()
            except IsADirectoryError:
                raise ArtifactError(
                    f"{path} is a folder, not an answers file: move it out of {path.parent}; {_NEVER_THE_STORE}"
                ) from None
            except FileNotFoundError:
                raise ArtifactError(
                    f"{path} is gone since its folder was listed (moved out by another process?): run again"
                ) from None
            except OSError as e:  # the file is there but cannot be read now: its answers may be whole
                raise ArtifactError(
                    f"{path} cannot be read ({e.strerror or e}): give its permissions back, or retry once the "
                    f"disk answers (or once whoever moved it is done); keep the file (its answers were paid for), and "
                    f"{_NEVER_THE_STORE}"
                ) from None
            try:
                k, desc = decode_answers(data)
            except MemoryError:
                raise
            except Exception as e:  # answers are written atomically: a bad file was damaged afterwards
                raise ArtifactError(
                    f"{path} is damaged ({type(e).__name__}): move that one file out of the store; {_NEVER_THE_STORE}"
                ) from None
            if width is None:
                width, width_of = desc.shape[1:], path.name
            elif desc.shape[1:] != width:
                raise ArtifactError(self._width_mismatch(path, desc.shape[1:], width, width_of))
            keys.append(k)
            parts.append(desc)
            self._ranges[name] = (row, row + len(k))
            row += len(k)
        if parts:
            self._add(np.concatenate(keys), parts, adopt=True)
        self._files = names

    def _read_pack(self, names: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The pack's keys and descriptors, if it holds the first answer files of ``names``, in order (it
        is only a copy: one that cannot be read or holds other files is passed over)."""
        try:
            with np.load(self.dir / PACK) as z:
                files = [f.decode() for f in z["files"].tolist()]
                if not files or files != names[: len(files)]:
                    return [], []
                keys, desc, counts = z["keys"], z["descriptors"], z["counts"]
            if len(keys) != len(desc) or len(counts) != len(files) or counts.sum() != len(keys):
                return [], []
            if self.dim is not None and desc.shape[1:] != (self.dim,):
                return [], []  # its files are read and checked one by one
        except Exception:
            return [], []
        ends = np.cumsum(counts).tolist()
        self._ranges.update((f, (end - c, end)) for f, c, end in zip(files, counts.tolist(), ends))
        self._packed = len(files)
        return [keys], [desc]

    def _add(self, keys: np.ndarray, parts: list[np.ndarray], adopt: bool = False) -> None:
        """Rows for ``keys`` after those held (a key already held keeps its answer): the last block's
        free rows first, then a new block, as large as the rows held (up to BLOCK_BYTES), so that adding
        a call's answers costs the call's rows, not the store's. ``adopt``: the parts are the store's own
        (read from files), kept as they are."""
        new = parts[0] if len(parts) == 1 else np.concatenate(parts)
        base = self._rows
        if self._blocks and base - self._starts[-1] < len(self._blocks[-1]):
            last = self._blocks[-1]
            fill = min(len(new), len(last) - (base - self._starts[-1]))
            last[base - self._starts[-1] : base - self._starts[-1] + fill] = new[:fill]
            new = new[fill:]
            self._rows += fill
        if len(new):
            if adopt and new.dtype == np.float32 and new.flags.writeable and new.flags.c_contiguous:
                block = new  # read from the pack or joined from files: no room to spare
            else:
                most = max(1, BLOCK_BYTES // max(1, 4 * math.prod(new.shape[1:])))
                block = np.empty((max(len(new), min(most, max(self._rows, 64))), *new.shape[1:]), np.float32)
                block[: len(new)] = new
            self._blocks.append(block)
            self._starts.append(self._rows)
            self._rows += len(new)
        keys = np.asarray(keys, dtype="S64")
        self._row_keys.append(keys)
        listed = keys.tolist()
        if self._keys:
            for row, key in enumerate(listed, base):
                self._keys.setdefault(key, row)
        else:  # the first occurrence of each key wins, as with setdefault
            self._keys = dict(zip(reversed(listed), range(self._rows - 1, base - 1, -1)))

    def _take(self, rows: np.ndarray) -> np.ndarray:
        if len(self._blocks) == 1:
            return self._blocks[0][rows]
        if not self._blocks:
            return np.zeros((len(rows), 0), np.float32)
        out = np.empty((len(rows), *self._blocks[0].shape[1:]), np.float32)
        which = np.searchsorted(self._starts, rows, side="right") - 1
        for b in np.unique(which):
            sel = which == b
            out[sel] = self._blocks[b][rows[sel] - self._starts[b]]
        return out

    def _read_ledger(self) -> dict[str, Call]:
        """The calls on the ledger. It only grows by whole lines (a torn last line is cut before anything
        is appended, and an unterminated one only gains its newline), so the whole lines parsed before are
        not parsed again while the file still begins with the same bytes; a ledger rewritten in any other
        way is read again from its start. What is kept for the next read comes only from whole lines, all
        of them parsed, and is never handed out: the calls returned are a copy, which this process changes
        (a call begun, an outcome recorded) only after writing the ledger line that says so."""
        self._torn, self._unterminated = b"", False
        data = self.ledger_path.read_bytes() if self.ledger_path.exists() else b""
        if not data.startswith(self._ledger_seen):
            self._ledger_seen, self._ledger_lines, self._ledger_calls = b"", 0, {}
        rest = data[len(self._ledger_seen) :]
        lines = rest.split(b"\n")
        torn = lines.pop()  # after the last newline: empty unless a write was cut off (or an editor ate it)
        kept = dict(self._ledger_calls)  # _apply replaces calls, never changes one: the kept ones stay as read
        self._apply(kept, lines, self._ledger_lines + 1)
        self._ledger_calls, self._ledger_seen = kept, data[: len(data) - len(torn)]
        self._ledger_lines += len(lines)
        calls = {k: c.copy() for k, c in kept.items()}
        if torn and _is_entry(torn):  # a complete line without its newline: kept, the newline added on repair
            self._apply(calls, [torn], self._ledger_lines + 1)
            torn, self._unterminated = b"", True
        self._torn = torn
        return calls

    def _apply(self, calls: dict[str, Call], lines: list[bytes], first: int) -> None:
        """Ledger lines, numbered from ``first``, applied in order to ``calls`` (each change a new Call)."""
        for n, raw in enumerate(lines, first):
            try:
                e = json.loads(raw)
                if e["event"] == "send":
                    calls[e["call"]] = Call(e["call"], e["purpose"], e["images"], e["time"])
                elif e.get("call") in calls:
                    c = calls[e["call"]] = calls[e["call"]].copy()
                    c.outcome, c.seconds, c.detail = e["event"], e.get("seconds"), e.get("detail", "")
            except (ValueError, KeyError, TypeError):
                raise ArtifactError(
                    f"{self.ledger_path}, line {n}: not a ledger entry; the ledger is damaged. "
                    "Keep a copy and remove that line to go on"
                ) from None

    def calls(self, purpose: str | None = None) -> list[Call]:
        return [c for c in self._calls.values() if purpose is None or c.purpose == purpose]

    def has(self, key: bytes) -> bool:
        return key in self._keys

    def answers(self, keys: Iterable[bytes]) -> np.ndarray:
        count = len(keys) if isinstance(keys, (list, tuple)) else -1  # known: one allocation, not a growing one
        return self._take(np.fromiter(map(self._keys.__getitem__, keys), np.int64, count))

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
        return {
            "requests": sum(1 for c in calls if c.outcome not in NOT_A_REQUEST),
            "images_sent": sum(c.images for c in calls if c.outcome not in NOT_A_REQUEST),
            "images_spent": sum(c.images for c in calls if c.spent),
            **{f"images_{o}": n for o, n in by.items()},
            "answered_seconds": round(seconds, 3),
            "answered_images_per_second": round(sum(c.images for c in answered) / seconds, 1) if seconds else None,
        }

    # -- writing (only while holding the lock) ----------------------------------------------------
    @contextmanager
    def locked(self, stall_s: float | None = None, say=None) -> Iterator["AnswerStore"]:
        """Hold the store for one process: reload, repair a torn ledger line, record lost calls.

        While another process holds it, say once who it is (``lock.json``) and wait as long as that
        process shows progress (a ledger line, or taking the lock, within ``stall_s`` seconds); give up
        with a TeacherError when it has shown none for longer. ``stall_s`` None: wait for ever."""
        self._acquire(stall_s, say or (lambda line: print(line, file=sys.stderr, flush=True)))
        try:
            atomic_write_bytes(
                self.dir / "lock.json",
                (
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "host": socket.gethostname(),
                            "command": " ".join(sys.argv)[:300],
                            "since": _now(),
                        }
                    )
                    + "\n"
                ).encode(),
            )
            self.refresh()
            self._repair()
            yield self
            self._pack_if_due()
        finally:
            self._lock.release()

    def _pack_if_due(self) -> None:
        """Write the pack anew when the answer files it does not hold are many: at least PACK_MIN, and a
        quarter of those it holds (so that each answer is copied a few times in all, and opening reads
        the pack and a few files). Only a copy: a pack that cannot be written is left as it was."""
        if len(self._files) - self._packed < max(PACK_MIN, self._packed // 4):
            return
        # the files' rows in name order (calls made in the same second may have been answered in another)
        ranges = [self._ranges[n] for n in self._files]
        order = np.concatenate([np.arange(a, b) for a, b in ranges])
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{PACK}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    files=np.array([n.encode() for n in self._files], dtype=bytes),
                    counts=np.array([b - a for a, b in ranges], np.int64),
                    keys=np.concatenate(self._row_keys)[order],
                    descriptors=self._take(order),
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / PACK)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            return
        self._packed = len(self._files)
        self._row_keys = [np.concatenate(self._row_keys)]

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
                    "are kept) or let it finish, then rerun this one"
                )

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
        save_npz_atomic(
            self.dir / "canaries.npz",
            keys=np.array(keys, dtype="S64"),
            **{f"pixels_{i}": np.asarray(p, dtype=np.uint8) for i, p in enumerate(pixels)},
        )

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
                    self._outcome(c, "answered", "recovered: its answers were stored, its outcome line was not")
                else:
                    self._outcome(c, "lost", "no outcome was recorded (the process was killed, or its write failed)")

    def begin(self, keys: list[bytes], purpose: str) -> Call:
        """Record a call before it is sent: its keys, then its ``send`` line (both on disk first)."""
        call = Call(f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}", purpose, len(keys), _now())
        atomic_write_bytes(self.dir / "calls" / f"{call.id}.keys", b"\n".join(keys) + b"\n")
        self._append({"event": "send", "call": call.id, "purpose": purpose, "images": call.images, "time": call.time})
        self._calls[call.id] = call
        return call

    def answered(self, call: Call, keys: list[bytes], descriptors: np.ndarray, seconds: float) -> None:
        save_npz_atomic(
            self.dir / "answers" / f"{call.id}.npz",
            keys=np.array(keys, dtype="S64"),
            descriptors=np.asarray(descriptors, dtype=np.float32),
        )
        if len(keys):
            self._add(keys, [np.asarray(descriptors, dtype=np.float32)])
        name = f"{call.id}.npz"
        self._ranges[name] = (self._rows - len(keys), self._rows)
        bisect.insort(self._files, name)
        self._outcome(call, "answered", seconds=seconds)

    def verified(self, call: Call, seconds: float) -> None:
        """A re-asked stored image: the answer is compared, not stored."""
        self._outcome(call, "answered", "verification: compared with the stored answer, not stored", seconds)

    def failed(self, call: Call, outcome: str, detail: str) -> None:
        if outcome not in SPENT + NOT_SPENT:
            raise ValueError(f"unknown call outcome {outcome!r}")
        self._outcome(call, outcome, detail)

    def _outcome(self, call: Call, outcome: str, detail: str = "", seconds: float | None = None) -> None:
        """The call's outcome on the ledger, then on ``call``: a write that fails leaves the call without an
        outcome, which counts as spent (even where the line reached the ledger before the error)."""
        seconds = call.seconds if seconds is None else seconds
        entry = {"event": outcome, "call": call.id, "time": _now()}
        if seconds is not None:
            entry["seconds"] = round(seconds, 4)
        if detail:
            entry["detail"] = detail
        self._append(entry)
        call.outcome, call.detail, call.seconds = outcome, detail, seconds

    def _append(self, entry: dict) -> None:
        with open(self.ledger_path, "ab") as f:
            f.write((json.dumps(entry) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
