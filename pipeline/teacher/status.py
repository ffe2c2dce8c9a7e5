"""What a user wants to know about the teacher before spending more on it: which teacher, where
its answers are, and how many calls each purpose has made and has left (from the ledger)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.params import Params
from pipeline.teacher.blackbox import open_store, read_card


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def teacher_status(params: Params, teacher_dir: Path, metrics_dir: Path = Path("metrics")) -> str:
    lines = [
        f"budgets: {', '.join(map(str, params.budgets))} (the teacher answers at most max = "
        f"{params.max_budget} training images; queries.extra_calls {params.queries.extra_calls})"
    ]
    if not (teacher_dir / "card.json").exists():
        return "\n".join(lines + [f"teacher: not built yet ({teacher_dir}/card.json; run `dvc repro`)"])
    card = read_card(teacher_dir)
    where = card.get("endpoint") or f"{teacher_dir / card['weights']} (in-process)"
    lines.append(f"teacher: {card['kind']}, {card['dim']}-d descriptors, at {where}")
    if card["kind"] == "precomputed":
        return "\n".join(lines + ["calls: none (precomputed descriptors are looked up, not queried)"])
    store = open_store(card, params.queries)
    lines.append(f"answers stored: {len(store)} in {store.dir}")
    for purpose in ("train", "test", "verify"):
        s = store.summary(purpose)
        if s["requests"] or s["images_refused"] or s["images_unreachable"]:
            lines.append(
                f"  {purpose}: {s['requests']} requests, {s['images_sent']} images sent "
                f"({s['images_answered']} answered, {s['images_lost']} lost to kills, {s['images_failed']} "
                f"failed, {s['images_invalid']} invalid; {s['images_refused']} refused, not counted)"
            )
    dump, test = _read(metrics_dir / "queries.json"), _read(metrics_dir / "teacher.json")
    if dump:
        left = dump["budget"] + params.queries.extra_calls - dump["spent"]
        lines.append(
            f"training set of the last dump: {dump['spent']} images sent for its {dump['unique']} images, "
            f"budget {dump['budget']}: {max(left, 0)} calls left"
        )
    if test:
        lines.append(
            f"test set of the last evaluation: {test['test_queries']} images sent for its "
            f"{test['test_images']} images (counted apart from the training budget)"
        )
    lines.append(f"ledger: {store.ledger_path}")
    return "\n".join(lines)
