"""The teacher as a black box: images in, descriptors out, every call through the gate.

``open_teacher`` is the only way from the teacher's card (``models/teacher/card.json``, written by
the teacher stage) to its answers: built teachers run in-process, served ones over HTTP, a command
as a program; all of them behind the same gate, store and ledger. Precomputed descriptors are
looked up by name and never counted (nothing is queried).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.errors import ArtifactError
from pipeline.params import BUILT_TEACHERS, QueriesParams
from pipeline.teacher.inputs import TeacherInputs

CARD = "card.json"
# How long the other ranks wait for rank 0's teacher calls. The gate bounds each call (queries.timeout_s,
# retries, max_backoff_s) but not how many a request makes, nor how long another process holding the
# store may keep recording calls, so the wait is on a group of its own whose timeout is, in practice,
# none: the default collective timeout (10 or 30 min) would kill rank 0 mid-call and lose that call.
TEACHER_WAIT = datetime.timedelta(days=7)


def read_card(teacher_dir: Path) -> dict:
    path = Path(teacher_dir) / CARD
    if not path.exists():
        raise ArtifactError(f"{path} not found: run `dvc repro teacher` first")
    return json.loads(path.read_text())


class GatedTeacher:
    def __init__(self, gate, ranks_waiting=None):
        self.gate = gate
        self.store = gate.store
        self._ranks_waiting = ranks_waiting  # the group the other ranks wait on until rank 0 is done

    def describe(
        self, inputs: TeacherInputs, purpose: str, budget: int, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, dict]:
        try:
            descriptors, report = self.gate.describe(inputs, purpose, budget, progress)
        finally:
            if hasattr(self.gate.client, "close"):  # the other ranks may stop describing
                self.gate.client.close()
            if self._ranks_waiting is not None:  # they may go on
                import torch.distributed as dist

                dist.barrier(group=self._ranks_waiting)
                self._ranks_waiting = None
        stats = {
            **dataclasses.asdict(report),
            "teacher": self.gate.client.endpoint,
            "store": str(self.store.dir),
            "ledger": {"this_purpose": self.store.summary(purpose), "all": self.store.summary()},
        }
        return descriptors, stats


class PrecomputedTeacher:
    store = None

    def __init__(self, descriptors):
        self.descriptors = descriptors

    def describe(
        self, inputs: TeacherInputs, purpose: str, budget: int, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, dict]:
        out = self.descriptors.describe(inputs)
        if progress:
            progress(len(inputs))
        return out, {
            "purpose": purpose,
            "images": len(inputs),
            "unique": len(set(inputs.names)),
            "sent": 0,
            "stored_before": len(inputs),
            "spent": 0,
            "budget": budget,
            "teacher": f"{self.descriptors.path} (precomputed)",
            "store": None,
            "ledger": None,
        }


def identity_of(card: dict) -> dict:
    """Whose answers a store holds: the weights' hash for a teacher built here, the endpoint for a
    served one, the command line and the content of the files it names for a command."""
    kind = card["kind"]
    if kind in BUILT_TEACHERS:
        return {"kind": kind, "weights_sha256": card["weights_sha256"]}
    # a served teacher's descriptor size is part of who it is: answers of another size are another
    # teacher's, kept in a store of their own
    if kind == "mlflow":
        return {"kind": kind, "url": card["url"].rstrip("/"), "dim": card["dim"]}
    if kind == "kserve-v2":
        return {"kind": kind, "url": card["url"].rstrip("/"), "model": card["model"], "dim": card["dim"]}
    if kind == "command":
        from pipeline.teacher.clients import CommandTeacher

        return {
            "kind": kind,
            "command": card["command"],
            "dim": card["dim"],
            "files": CommandTeacher(card["command"], 1.0).named_files(),
        }
    raise ValueError(f"a {kind} teacher has no store")


def open_store(card: dict, queries: QueriesParams):
    from pipeline.teacher.store import AnswerStore

    return AnswerStore(queries.store_root(), identity_of(card), dim=card["dim"])


def _unchanged(card: dict, key: str, now, what: str, teacher_dir: Path) -> None:
    """The teacher's files must be what its card was written for: DVC does not watch them."""
    if card.get(key) != now:
        raise ArtifactError(
            f"{what} changed since the teacher stage wrote {Path(teacher_dir) / CARD}: run "
            "`dvc repro -f teacher` so that every stage after it sees the new teacher"
        )


def client_for(card: dict, teacher_dir: Path, queries: QueriesParams, device):
    """The client that reaches the teacher the card describes (checked to be reachable)."""
    from pipeline.teacher import clients
    from pipeline.teacher.http import HttpEndpoint

    kind = card["kind"]
    if kind in BUILT_TEACHERS:
        weights = Path(teacher_dir) / card["weights"]
        from pipeline.io import file_sha256

        if not weights.exists() or file_sha256(weights) != card["weights_sha256"]:
            raise ArtifactError(
                f"{weights} is missing or not the weights its card {Path(teacher_dir) / CARD} was "
                "written for: rerun `dvc repro teacher`"
            )
        return clients.LocalTeacher(weights, device, queries.call_batch)
    if kind == "command":
        return clients.CommandTeacher(card["command"], queries.timeout_s)
    http = HttpEndpoint(card["url"], queries.timeout_s, card["auth_env"], card["auth_header"])
    client = (
        clients.MlflowTeacher(card["url"], http)
        if kind == "mlflow"
        else clients.KServeTeacher(card["url"], card["model"], http)
    )
    client.check()
    return client


def open_teacher(teacher_dir: Path, queries: QueriesParams, device) -> GatedTeacher | PrecomputedTeacher | None:
    """The teacher behind its gate. Under torchrun, rank 0 gets the gate; the other ranks describe
    their share of each of its calls (a teacher built here) and get None once rank 0 is done."""
    from pipeline import distributed
    from pipeline.teacher.gate import QueryGate

    card = read_card(teacher_dir)
    if card["kind"] == "precomputed":
        from pipeline.teacher.precomputed import PrecomputedDescriptors

        source = PrecomputedDescriptors(Path(card["descriptors"]), card["dim"])
        _unchanged(card, "descriptors_sha256", source.sha256, card["descriptors"], teacher_dir)
        return PrecomputedTeacher(source)
    if card["kind"] == "command":
        from pipeline.teacher.clients import CommandTeacher

        _unchanged(card, "files", CommandTeacher(card["command"], 1.0).named_files(), "the files it names", teacher_dir)
    rank, ranks = distributed.world()
    sharded = ranks > 1 and card["kind"] in BUILT_TEACHERS
    waiting = None
    if ranks > 1:  # every rank creates it (a collective); the ranks wait on it, not on the default group
        import torch.distributed as dist

        waiting = dist.new_group(backend="gloo", timeout=TEACHER_WAIT)
    if rank > 0:
        if sharded:
            from pipeline.teacher.sharded import serve

            serve(client_for(card, teacher_dir, queries, device), waiting)
        else:  # a served teacher: only rank 0 calls it; wait until it is done, however long that takes
            import torch.distributed as dist

            dist.barrier(group=waiting)
        return None
    client = client_for(card, teacher_dir, queries, device)
    if sharded:
        from pipeline.teacher.sharded import ShardedClient

        client = ShardedClient(client, waiting)
        waiting = None  # its close() releases the ranks
    return GatedTeacher(QueryGate(client, open_store(card, queries), queries, card["dim"]), waiting)
