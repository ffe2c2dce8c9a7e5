"""Costs as the pool grows: synthetic pools of 10^4, 10^5 and 10^6 images (uint8 28x28, a fixed seed),
a budget of 10^4, every stage's own code. Each (component, size) runs in a fresh process, so that its
peak memory (ru_maxrss, less the interpreter with its imports) is its own.

- sample: ``choose_subset`` with the typical-coverage order in the default view (``sample.features``:
  the size's pretrained student embeds the pool; a fresh one here, the timing does not depend on its
  weights), split into embedding, typicality (each image's nearest neighbours) and the greedy order;
- store: a teacher's ``AnswerStore`` holding 10^4, 10^5, 10^6 answers: inserts per second (calls of
  ``queries.call_batch`` answers, each on the ledger and on disk, as the gate makes them), the time to
  open it, and lookups per second against a bare in-memory dict over the same keys and descriptors (in
  requests of ``--lookup-batch`` keys, the budget by default, each first in turn; beside it, all keys
  in one request);
- gate: ``QueryGate.describe`` asking a built teacher about new images with that many answers stored,
  against its bare forward: the gate's overhead per image (its wall time less the teacher's call time);
- augment: ``virtual_samples`` over every training-pool image's answer (the ceiling's augment; a budget
  cell's is the same over B answers);
- train step: ``train_student`` on every pool image (the ceiling and the full-supervision baseline),
  the recommended method and size: seconds per step and the set-up (inputs on the device).

Writes reports/bench/scale.csv, scale.md and scale.png and prints each target with PASS or MISS.
With exact neighbours (``sample.neighbours`` at that size) the selection's pairwise step grows as the
pool squared: a size it would take longer than ``--max-sample-s`` on is not run but extrapolated from
the sizes below it (marked as such); approximate neighbours are always run.

  python scripts/bench_scale.py [--sizes 1e4,1e5,1e6] [--threads 1]   (make bench-scale: the defaults)
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMPONENTS = ("sample", "store insert", "store open", "store lookup", "dict lookup", "gate", "augment", "train step")
SELECTION_TARGET_S = 120.0
# columns that a table's missing values make floats
INTEGERS = ("budget", "calls", "images", "virtual", "batch", "request")
DIM = 128  # the teacher's descriptor size (teacher.dim)
SIDE = 28  # data.image_size of the default data


# -- measuring inside a worker ---------------------------------------------------------------
def rss_mb() -> float:
    """The process's resident memory now (Linux), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_mb()


def peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def pool_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8)


def unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def stored_chunks(n: int, chunk: int = 65536):
    """The store's synthetic answers, chunk by chunk: (keys of fresh images, unit descriptors); the same
    in every process."""
    from pipeline.teacher.inputs import pixels_key

    for k, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        images = pool_images(m, seed=1000 + k)
        yield [pixels_key(im) for im in images], unit_rows(m, seed=2000 + k)


def store_identity(n: int) -> dict:
    return {"kind": "bench-scale", "answers": n}


def worker_sample(n: int, a: dict) -> dict:
    import torch

    import pipeline.distill.selection as selection
    import pipeline.models.inference as inference
    from tests.pipeline_copy import repo_params

    p = repo_params()
    timed = {"describe": 0.0, "typicality": 0.0, "approximate_typicality": 0.0, "ivf_index": 0.0, "typical_order": 0.0}

    def timing(module, name):  # the project's functions, only timed
        inner = getattr(module, name)

        def timed_call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                timed[name] += time.perf_counter() - t0

        setattr(module, name, timed_call)

    for module, name in (
        (inference, "describe"),
        (selection, "typicality"),
        (selection, "approximate_typicality"),
        (selection, "ivf_index"),
        (selection, "typical_order"),
    ):
        timing(module, name)
    base = rss_mb()
    pool = pool_images(n)
    val_size = min(p.sample.val_size, n // 10)
    budget = min(a["budget"], n - val_size)
    t0 = time.perf_counter()
    subset = selection.choose_subset(
        "typical",
        p.sample.features,
        pool,
        n,
        budget,
        p.data.image_size,
        val_size,
        p.sample.seed,
        Path(a["work"]) / "pretrained",
        torch.device("cpu"),
        neighbours=p.sample.neighbours,
    )
    seconds = time.perf_counter() - t0
    assert len(subset) == budget and len(np.unique(subset)) == budget
    return {
        "seconds": seconds,
        "peak_mb": peak_mb() - base,
        "budget": budget,
        "features": p.sample.features,
        "embed_s": timed["describe"],
        "neighbours": selection.neighbours_for(p.sample.neighbours, n - val_size),
        "typicality_s": timed["typicality"] + timed["approximate_typicality"],
        "index_s": timed["ivf_index"],  # part of the typicality: the approximate one's lists, trained once
        "greedy_s": timed["typical_order"] - timed["typicality"] - timed["approximate_typicality"],
        "other_s": seconds - timed["describe"] - timed["typical_order"],
    }


def worker_store_insert(n: int, a: dict) -> dict:
    """Answers added as the gate adds them: calls of ``call_batch``, each on the ledger and on disk, under
    the store's lock (whose release may write the pack), timed less the making of the synthetic keys. The
    purpose is the ceiling's, whose dump of the whole pool is what fills a store this large."""
    from pipeline.teacher.store import AnswerStore

    batch = a["call_batch"]
    root = Path(a["work"]) / f"store-{n}"
    shutil.rmtree(root, ignore_errors=True)
    base = rss_mb()
    store = AnswerStore(root, store_identity(n))
    making, last = 0.0, (0, 0.0)
    t0 = time.perf_counter()
    with store.locked():
        chunks = stored_chunks(n)
        while True:
            t1 = time.perf_counter()
            got = next(chunks, None)
            making += time.perf_counter() - t1
            if got is None:
                break
            keys, desc = got
            t1 = time.perf_counter()
            for s in range(0, len(keys), batch):
                call = store.begin(keys[s : s + batch], "ceiling")
                store.answered(call, keys[s : s + batch], desc[s : s + batch], 0.01)
            last = (len(keys), time.perf_counter() - t1)
    seconds = time.perf_counter() - t0 - making
    assert len(store) == n
    return {
        "seconds": seconds,
        "per_second": n / seconds,
        "last_chunk_per_second": last[0] / last[1],
        "peak_mb": peak_mb() - base,
        "calls": math.ceil(n / batch),
    }


def worker_store_read(n: int, a: dict) -> list[dict]:
    """Open the store, then look every key up (shuffled) through it and through a bare dict, interleaved:
    in requests of ``lookup_batch`` keys (``budget`` when 0; the ratio is of the medians, its spread repeat
    by repeat), and in one request of every key, each repeat."""
    from pipeline.teacher.store import AnswerStore

    root = Path(a["work"]) / f"store-{n}"
    base = rss_mb()
    t0 = time.perf_counter()
    store = AnswerStore(root, store_identity(n))
    t_open = time.perf_counter() - t0
    held = max(0.0, rss_mb() - base)
    open_peak = max(0.0, peak_mb() - base)
    keys, parts = [], []
    for k, d in stored_chunks(n):
        keys += k
        parts.append(d)
    before = rss_mb()
    # the bare baseline: a dict to rows of one matrix, its keys objects of their own (as the store's are:
    # a lookup by the very object the dict holds would skip comparing the bytes)
    bare = dict(zip([bytes(bytearray(k)) for k in keys], range(n)))
    matrix = np.concatenate(parts)
    del parts
    bare_mb = max(0.0, rss_mb() - before)
    query = [keys[i] for i in np.random.default_rng(3).permutation(n)]
    # requests of --budget keys (a budget cell's dump asks for its subset's answers at once), every stored
    # key once per repeat; and one request of every key (the ceiling's dump of the whole pool), whose time
    # moves with allocating its n x 128 result
    size = max(1, min(n, a.get("lookup_batch") or a.get("budget") or n))
    requests = [query[s : s + size] for s in range(0, n, size)]
    for keys_ in requests:  # the same answers both ways, checked untimed
        assert np.array_equal(store.answers(keys_), matrix[[bare[k] for k in keys_]])

    def through_store():
        for keys_ in requests:
            store.answers(keys_)

    def through_dict():
        for keys_ in requests:
            matrix[np.fromiter(map(bare.__getitem__, keys_), np.int64, len(keys_))]

    def timed(f) -> float:
        t0 = time.perf_counter()
        f()
        return time.perf_counter() - t0

    store_t, bare_t, has_t, contains_t, whole_store_t, whole_bare_t = [], [], [], [], [], []
    for r in range(a["repeats"]):
        both = [(store_t, through_store), (bare_t, through_dict)]
        for times, look_up in both if r % 2 == 0 else both[::-1]:  # each goes first in turn
            times.append(timed(look_up))
        has_t.append(timed(lambda: all(map(store.has, query))))
        contains_t.append(timed(lambda: all(map(bare.__contains__, query))))
        whole = [
            (whole_store_t, lambda: store.answers(query)),
            (whole_bare_t, lambda: matrix[np.fromiter(map(bare.__getitem__, query), np.int64, n)]),
        ]
        for times, look_up in whole if r % 2 == 0 else whole[::-1]:
            times.append(timed(look_up))
    assert all(map(store.has, query)) and all(map(bare.__contains__, query))
    med = lambda v: float(np.median(v))  # noqa: E731
    ratios = [s / b for s, b in zip(store_t, bare_t)]
    return [
        {
            "component": "store open",
            "seconds": t_open,
            "peak_mb": open_peak,
            "held_mb": held,
            "calls": len(list((store.dir / "answers").glob("*.npz"))),
        },
        {
            "component": "store lookup",
            "seconds": med(store_t),
            "per_second": n / med(store_t),
            "peak_mb": held,
            "has_per_second": n / med(has_t),
            "vs_dict": med(store_t) / med(bare_t),
            "vs_dict_min": min(ratios),
            "vs_dict_max": max(ratios),
            "request": size,
            "whole_vs_dict": med(whole_store_t) / med(whole_bare_t),
        },
        {
            "component": "dict lookup",
            "seconds": med(bare_t),
            "per_second": n / med(bare_t),
            "peak_mb": bare_mb,
            "has_per_second": n / med(contains_t),
        },
    ]


def worker_gate(n: int, a: dict) -> dict:
    import torch

    from pipeline.params import QueriesParams
    from pipeline.teacher.clients import LocalTeacher
    from pipeline.teacher.gate import QueryGate
    from pipeline.teacher.inputs import TeacherInputs
    from pipeline.teacher.store import AnswerStore

    count, batch = a["gate_images"], a["call_batch"]
    client = LocalTeacher(Path(a["work"]) / "teacher" / "weights.pt", torch.device("cpu"), batch)
    q = QueriesParams(
        store=str(a["work"]),
        call_batch=batch,
        extra_calls=0,
        timeout_s=60,
        retries=0,
        max_backoff_s=1,
        max_qps=0,
        verify=0,
    )
    base = rss_mb()
    store = AnswerStore(Path(a["work"]) / f"store-{n}", store_identity(n))
    gate = QueryGate(client, store, q, DIM)
    # the store insert before this wrote up to 732 MiB: flushed first, so that the gate's own fsyncs (each
    # call's ledger lines, keys and answers) are timed, not the disk still writing what another worker wrote
    os.sync()
    client(pool_images(batch, seed=7))  # warm-up: allocator, kernels
    walls, calls, bares = [], [], []
    for r in range(a["repeats"]):
        images = pool_images(count, seed=10 + r)  # never asked before: every one is sent
        t0 = time.perf_counter()
        for s in range(0, count, batch):
            client(images[s : s + batch])
        bares.append(time.perf_counter() - t0)
        before = {c.id for c in store.calls()}
        t0 = time.perf_counter()
        _, report = gate.describe(TeacherInputs(images, [f"new-{r}-{i}" for i in range(count)]), "train", count)
        walls.append(time.perf_counter() - t0)
        assert report.sent == count
        calls.append(sum(c.seconds for c in store.calls() if c.id not in before))
    wall, call, bare = (float(np.median(v)) for v in (walls, calls, bares))
    return {
        "seconds": wall,
        "per_second": count / wall,
        "peak_mb": peak_mb() - base,
        "images": count,
        "overhead_ms_per_image": 1e3 * (wall - call) / count,
        "overhead": (wall - call) / call,
        "bare_forward_s": bare,
        "vs_bare_forward": (wall - bare) / bare,
    }


def worker_augment(n: int, a: dict) -> dict:
    from pipeline.distill.interpolation import virtual_samples
    from tests.pipeline_copy import repo_params

    p = repo_params().augment
    base = rss_mb()
    answers = unit_rows(n, seed=5)
    t0 = time.perf_counter()
    triples, targets = virtual_samples(answers, p.ratio, p.alpha, p.pairing, p.knn, 0, n)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "per_second": len(triples) / seconds,
        "peak_mb": peak_mb() - base,
        "virtual": len(triples),
        "pairing": p.pairing,
    }


def worker_train_step(n: int, a: dict) -> dict:
    import torch

    from pipeline.distill.interpolation import virtual_samples
    from pipeline.distill.train import TrainingData, train_student
    from tests.pipeline_copy import repo_params

    steps = a["train_steps"]
    p = repo_params({"train": {"steps": steps, "log_every": steps}})
    base = rss_mb()
    targets = unit_rows(n, seed=5)
    triples, virtual = virtual_samples(
        targets, p.augment.ratio, p.augment.alpha, p.augment.pairing, p.augment.knn, 0, n
    )
    data = TrainingData(pool_images(n), targets, triples, virtual)
    stamps = []
    t0 = time.perf_counter()
    train_student(
        data,
        p.size(p.student),
        p.train,
        p.method[p.recommended],
        0,
        torch.device("cpu"),
        on_step=lambda step, loss: stamps.append(time.perf_counter()),
    )
    step = float(np.median(np.diff(stamps)))
    return {
        "seconds": step,
        "per_second": 1 / step,
        "peak_mb": peak_mb() - base,
        "setup_s": stamps[0] - t0 - step,
        "method": p.recommended,
        "student": p.student,
        "batch": p.train.batch_size + p.train.virtual_per_batch,
    }


WORKERS = {
    "sample": worker_sample,
    "store insert": worker_store_insert,
    "store read": worker_store_read,
    "gate": worker_gate,
    "augment": worker_augment,
    "train step": worker_train_step,
}


# -- the parent: one process per measurement ---------------------------------------------------
def measure(component: str, n: int, args: dict) -> list[dict]:
    if args["in_process"]:  # a quick check: the figures, but memory is not each measurement's own
        out = json.loads(json.dumps(WORKERS[component](n, args)))
        rows = out if isinstance(out, list) else [dict(out, component=component)]
        return [dict(r, size=n, measured=True, threads=args["threads"]) for r in rows]
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        component,
        "--sizes",
        str(n),
        "--args",
        json.dumps(args),
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{component} at {n:,}: the worker failed\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    rows = out if isinstance(out, list) else [dict(out, component=component)]
    click.echo(f"  {component} at {n:,}: done in {time.perf_counter() - started:.1f} s", err=True)
    return [dict(r, size=n, measured=True, threads=args["threads"]) for r in rows]


def predict_sample(rows: list[dict], n: int) -> dict | None:
    """The selection at ``n`` from the largest size measured with exact neighbours: embedding and the
    greedy order grow with the pool (the budget fixed), the typicality with its square. None where
    ``sample.neighbours`` finds approximate ones at ``n`` (near-linear: it is run)."""
    if neighbours_at(n) != "exact":
        return None
    done = [r for r in rows if r["component"] == "sample" and r["measured"] and neighbours_of(r) == "exact"]
    if not done:
        return None
    r = max(done, key=lambda r: r["size"])
    k = n / r["size"]
    parts = {
        "embed_s": r["embed_s"] * k,
        "typicality_s": r["typicality_s"] * k * k,
        "greedy_s": r["greedy_s"] * k,
        "other_s": r["other_s"] * k,
    }
    return {
        "component": "sample",
        "size": n,
        "measured": False,
        "seconds": sum(parts.values()),
        **parts,
        "budget": r["budget"],
        "features": r["features"],
        "neighbours": "exact",
        "peak_mb": float("nan"),
        "note": f"extrapolated from {r['size']:,}",
    }


def neighbours_of(row: dict) -> str:
    """A sample row's neighbours: exact where it does not say (rows written before the setting, or a CSV's NaN)."""
    value = row.get("neighbours")
    return value if isinstance(value, str) else "exact"


def neighbours_at(n: int) -> str:
    """How the selection finds neighbours in a synthetic pool of ``n`` (params.yaml's sample.neighbours)."""
    from pipeline.distill.selection import neighbours_for
    from tests.pipeline_copy import repo_params

    p = repo_params()
    return neighbours_for(p.sample.neighbours, n - min(p.sample.val_size, n // 10))


def largest_fitting(rows: list[dict], limit: float) -> int | None:
    """The largest pool the selection with exact neighbours takes at most ``limit`` seconds on (from the
    largest size measured with them)."""
    done = [r for r in rows if r["component"] == "sample" and r["measured"] and neighbours_of(r) == "exact"]
    if not done:
        return None
    r = max(done, key=lambda r: r["size"])
    lin = (r["embed_s"] + r["greedy_s"] + r["other_s"]) / r["size"]
    quad = r["typicality_s"] / r["size"] ** 2
    return int((-lin + math.sqrt(lin * lin + 4 * quad * limit)) / (2 * quad)) if quad > 0 else int(limit / lin)


def growth(rows: list[dict], component: str) -> float | None:
    """The largest log-log slope of memory against size between consecutive sizes (1: linear)."""
    pts = sorted(
        (r["size"], r["peak_mb"])
        for r in rows
        if r["component"] == component and r["measured"] and r.get("peak_mb", 0) == r.get("peak_mb", 0)
    )
    slopes = [math.log(max(m2, 1.0) / max(m1, 1.0)) / math.log(s2 / s1) for (s1, m1), (s2, m2) in zip(pts, pts[1:])]
    return max(slopes) if slopes else None


def targets(rows: list[dict], sizes: list[int]) -> list[tuple[str, str, str]]:
    def at(component, n):
        return next((r for r in rows if r["component"] == component and r["size"] == n), None)

    top = max(sizes)
    million = 10**6
    out = []
    look = at("store lookup", million)
    out.append(
        (
            "store lookup of 10^6 stored keys within 2x of a bare dict (in requests of the budget's size)",
            ("PASS" if look["vs_dict"] <= 2 else "MISS") if look else "NOT MEASURED",
            f"{look['vs_dict']:.2f}x ({look['per_second']:,.0f} vs {at('dict lookup', million)['per_second']:,.0f} "
            f"lookups/s{_requests(look)})"
            if look
            else f"largest size run: {top:,}",
        )
    )
    opened = at("store open", million)
    out.append(
        (
            "store of 10^6 answers opens in under 2 s",
            ("PASS" if opened["seconds"] < 2 else "MISS") if opened else "NOT MEASURED",
            f"{opened['seconds']:.2f} s ({int(opened['calls']):,} answer files)"
            if opened
            else f"largest size run: {top:,}",
        )
    )
    gates = [r for r in rows if r["component"] == "gate"]
    worst = max(gates, key=lambda r: r["overhead"]) if gates else None
    out.append(
        (
            "gate overhead per image within 10% of the bare forward at every size",
            ("PASS" if worst["overhead"] <= 0.10 else "MISS") if worst else "NOT MEASURED",
            ", ".join(f"{r['size']:,}: {100 * r['overhead']:+.1f}%" for r in gates),
        )
    )
    slopes = {c: growth(rows, c) for c in ("sample", "store insert", "store open", "gate", "augment", "train step")}
    slopes = {c: s for c, s in slopes.items() if s is not None}
    worst_c = max(slopes, key=slopes.get) if slopes else None
    out.append(
        (
            "no stage's memory grows faster than linearly with the pool",
            ("PASS" if slopes[worst_c] <= 1.1 else "MISS") if slopes else "NOT MEASURED",
            "largest log-log slope per stage: " + ", ".join(f"{c} {s:.2f}" for c, s in slopes.items()),
        )
    )
    sel = at("sample", million)
    fits = largest_fitting(rows, SELECTION_TARGET_S)
    verdict = "NOT MEASURED" if sel is None else ("PASS" if sel["seconds"] <= SELECTION_TARGET_S else "MISS")
    out.append(
        (
            "selection within 2 minutes at 10^6",
            verdict,
            ("" if sel is None else f"{sel['seconds']:,.0f} s" + ("" if sel["measured"] else " (extrapolated)") + "; ")
            + (f"exact neighbours fit 2 minutes up to about {fits:,} images" if fits else ""),
        )
    )
    return out


def _requests(look: dict) -> str:
    """How a store lookup row was measured (rows written before requests were timed have no spread)."""
    if look.get("vs_dict_min") is None or look.get("vs_dict_min") != look.get("vs_dict_min"):
        return ""
    return (
        f", in requests of {int(look['request']):,} keys; {look['vs_dict_min']:.2f}x to {look['vs_dict_max']:.2f}x "
        f"over the repeats; all {int(look['size']):,} keys in one request {look['whole_vs_dict']:.2f}x"
    )


def table(rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame(rows)
    df["component"] = pd.Categorical(df["component"], COMPONENTS, ordered=True)
    df = df.sort_values(["component", "size"]).reset_index(drop=True)
    df["component"] = df["component"].astype(str)
    return df


def details(r) -> str:
    def get(key):
        v = r.get(key)
        if isinstance(v, float) and v == v and v.is_integer() and key in INTEGERS:
            return int(v)
        return None if v is None or (isinstance(v, float) and v != v) else v

    c = r["component"]
    if c == "sample":
        return (
            f"embed {get('embed_s'):.1f} s, typicality {get('typicality_s'):.1f} s, greedy {get('greedy_s'):.1f} s "
            f"(budget {get('budget'):,}, view {get('features')})" + (f"; {r['note']}" if get("note") else "")
        )
    if c == "store insert":
        return f"{get('calls'):,} calls; last 65,536: {get('last_chunk_per_second'):,.0f}/s"
    if c == "store open":
        return f"{get('calls'):,} answer files; holds {get('held_mb'):,.0f} MiB"
    if c == "store lookup":
        spread = (
            f" ({get('vs_dict_min'):.2f}x to {get('vs_dict_max'):.2f}x over the repeats)"
            if get("vs_dict_min") is not None
            else ""
        )
        whole = f"; all in one request {get('whole_vs_dict'):.2f}x" if get("whole_vs_dict") is not None else ""
        request = f" in requests of {get('request'):,} keys" if get("request") is not None else ""
        return f"{get('vs_dict'):.2f}x the dict's time{request}{spread}{whole}; has(): {get('has_per_second'):,.0f}/s"
    if c == "dict lookup":
        return f"bare dict + matrix; `in`: {get('has_per_second'):,.0f}/s"
    if c == "gate":
        return (
            f"{get('images'):,} new images; overhead {1e3 * get('overhead_ms_per_image'):.0f} us/image = "
            f"{100 * get('overhead'):+.1f}% of the teacher's call time ({100 * get('vs_bare_forward'):+.1f}% vs a "
            "separate bare forward)"
        )
    if c == "augment":
        return f"{get('virtual'):,} virtual triples ({get('pairing')} pairing)"
    if c == "train step":
        return f"{get('method')} {get('student')}, {get('batch'):,} rows/step; set-up {get('setup_s'):.1f} s"
    return ""


def markdown(df, verdicts, args: dict, fits: int | None, rows: list[dict]) -> str:
    import torch

    lines = [
        "# Costs as the pool grows (`make bench-scale`)",
        "",
        f"Synthetic pools of uint8 {SIDE}x{SIDE} images (fixed seeds), budget {args['budget']:,}, teacher "
        f"`teacher_cnn`-{DIM}d, student of `sample.features`/`student` from params.yaml; CPU, "
        f"{args['threads'] or torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores on this machine. "
        "Each row is one fresh process; memory is its peak (ru_maxrss) less the interpreter with its imports. "
        "For the store rows the size is the number of stored answers.",
        "",
        "| component | size | seconds | per second | peak MiB | details |",
        "|---|---|---|---|---|---|",
    ]
    for r in df.to_dict("records"):
        per = r.get("per_second")
        lines.append(
            f"| {r['component']} | {r['size']:,} | {r['seconds']:,.3f}{'' if r['measured'] else ' (est.)'} | "
            f"{'' if per is None or per != per else f'{per:,.0f}'} | "
            f"{'' if r['peak_mb'] != r['peak_mb'] else format(r['peak_mb'], ',.0f')} | {details(r)} |"
        )
    lines += ["", "## Targets", ""] + [f"- **{v}**: {t}: {m}" for t, v, m in verdicts]
    lines += [
        "",
        "Gate: its overhead is its wall time less the teacher's call time it measured itself (the same "
        "calls); the separate bare forward, timed before it, moves with the machine's load and is shown only "
        "for reference.",
        "",
        "## Selection at a million images",
        "",
        selection_note(rows, fits),
    ]
    return "\n".join(lines) + "\n"


def selection_note(rows: list[dict], fits: int | None) -> str:
    """What the selection at 10^6 takes here, by part, and how it scales."""
    million = next((r for r in rows if r["component"] == "sample" and r["size"] == 10**6), None)
    if million is None:
        return "The selection was not run or extrapolated at 10^6 (`--sizes` up to 1e6 does).\n"
    how = "measured" if million["measured"] else million.get("note", "extrapolated")
    e, t, g = million["embed_s"], million["typicality_s"], million["greedy_s"]
    neighbours = neighbours_of(million)
    exact = f"""\
With exact neighbours the typicality (each image's mean similarity to its 20 nearest neighbours)
compares every pair: n^2 x d = 1.3 x 10^14 multiply-adds at 10^6, over an hour here; exact
neighbours fit 2 minutes up to about {f"{fits:,}" if fits else "?"} images on this machine with these threads. So
`sample.neighbours: auto` finds them exactly only up to 131,072 training-pool images (the default pool
and sfm120k's)."""
    if neighbours == "exact":
        return (
            f"At 10^6 images ({how}, exact neighbours): embedding {e:,.0f} s, typicality {t:,.0f} s, "
            f"greedy order {g:,.0f} s.\n{exact}\n"
        )
    return f"""\
At 10^6 images ({how}, approximate neighbours): embedding {e:,.0f} s, typicality
{t:,.0f} s, greedy order {g:,.0f} s.
The typicality comes from a faiss IVF index (about sqrt(n) lists, 8 searched per image), each list
compared in one matrix product with the images that search it: near-linear.
The greedy order updates the 4096 best-scored images after each pick and, once per 64 picks, only the
images whose stale score could still reach them (stale scores only overestimate), never the whole pool
once per pick; a pick is taken only when it beats every score outside those 4096, so the order is the
one-pass-per-pick order up to float rounding (tested). The embedding is one forward pass of the
pretrained student over the pool, linear in it.
{cluster(million)}
{exact}
"""


def cluster(row: dict) -> str:
    """What would bring the selection within the target: the embedding and the typicality's searches split
    across workers (each embeds its share of the images and compares its share of the lists with the
    images that search them); the index's training, the greedy order and the rest stay on one machine.
    An estimate from the parts measured; it leaves out merging each image's best across the workers."""
    split = row["embed_s"] + row["typicality_s"] - row.get("index_s", 0.0)
    alone = row["seconds"] - split
    if alone >= SELECTION_TARGET_S:
        return (
            f"The parts that do not split across workers (the index's training, the greedy order, the rest) "
            f"already take {alone:,.0f} s here, over the {SELECTION_TARGET_S:.0f} s target."
        )
    workers = math.ceil(split / (SELECTION_TARGET_S - alone))
    if workers <= 1:
        return f"It fits the {SELECTION_TARGET_S:.0f} s target on this machine."
    return (
        f"Estimate for a cluster: the embedding and the typicality's searches ({split:,.0f} s here) split by "
        f"image and by list, so {workers} workers of this machine's speed would take {split / workers:,.0f} s for them "
        f"and the selection about {alone + split / workers:,.0f} s, within the {SELECTION_TARGET_S:.0f} s "
        f"target (the index's training, the greedy order and the rest, {alone:,.0f} s, stay on one machine); "
        "merging each image's best across the workers is not counted."
    )


def picture(df, path: Path) -> None:
    from pipeline.pictures import _plt, save_png

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    shown = [c for c in COMPONENTS if c != "dict lookup"]
    for ax, key, label in ((axes[0], "seconds", "seconds (a train step: per step)"), (axes[1], "peak_mb", "peak MiB")):
        for i, c in enumerate(shown):
            sub = df[df["component"] == c].sort_values("size")
            sub = sub[sub[key] == sub[key]]
            if not len(sub):
                continue
            color = f"C{i}"
            done, est = sub[sub["measured"]], sub[~sub["measured"]]
            ax.plot(done["size"], done[key], "o-", color=color, label=c)
            if len(est):
                ax.plot(
                    list(done["size"][-1:]) + list(est["size"]),
                    list(done[key][-1:]) + list(est[key]),
                    "o--",
                    color=color,
                    mfc="none",
                )
        sizes = np.array(sorted(df["size"].unique()), dtype=float)
        vals = df[key][df[key] == df[key]]
        if len(vals) and len(sizes) > 1:
            ref = float(vals.median()) * sizes / sizes[0]
            ax.plot(sizes, ref, ":", color="grey", label="linear reference")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pool images (store: stored answers)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].axhline(SELECTION_TARGET_S, color="red", lw=0.8, alpha=0.5)
    axes[0].text(
        df["size"].max(), SELECTION_TARGET_S * 0.75, "selection target: 2 min", color="red", fontsize=8, ha="right"
    )
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Time and peak memory against pool size (hollow, dashed: extrapolated)")
    fig.tight_layout()
    save_png(fig, path)


def parse_sizes(text: str) -> list[int]:
    return sorted({int(float(s)) for s in text.split(",") if s.strip()})


@click.command()
@click.option(
    "--sizes", default="1e4,1e5,1e6", show_default=True, help="pool sizes (and stored answers), comma-separated"
)
@click.option("--budget", default=10_000, show_default=True, help="images selected (capped at the training pool)")
@click.option("--threads", default=0, show_default=True, help="torch threads in every worker; 0: torch's default")
@click.option(
    "--components",
    default="sample,store,gate,augment,train",
    show_default=True,
    help="which to measure: sample, store, gate, augment, train",
)
@click.option(
    "--max-sample-s",
    default=600.0,
    show_default=True,
    help="the selection is not run at a size it is predicted to take longer than this on (extrapolated)",
)
@click.option("--gate-images", default=4096, show_default=True, help="new images per gate request")
@click.option("--train-steps", default=4, show_default=True)
@click.option("--lookup-batch", default=0, show_default=True, help="keys per store lookup request; 0: --budget")
@click.option("--repeats", default=5, show_default=True, help="of the lookups and the gate's requests (median)")
@click.option("--out", default=str(ROOT / "reports" / "bench"), show_default=True, type=click.Path(path_type=Path))
@click.option("--work", default=None, type=click.Path(path_type=Path), help="scratch folder (default: a temporary one)")
@click.option(
    "--redraw", is_flag=True, help="only write scale.md and scale.png again from the --out folder's scale.csv"
)
@click.option(
    "--in-process",
    is_flag=True,
    help="every measurement in this process (a quick check: peak memory is then not each one's own)",
)
@click.option("--worker", default=None, hidden=True)
@click.option("--args", "worker_args", default="{}", hidden=True)
def main(
    sizes,
    budget,
    threads,
    components,
    max_sample_s,
    gate_images,
    train_steps,
    lookup_batch,
    repeats,
    out,
    work,
    redraw,
    in_process,
    worker,
    worker_args,
):
    if worker:  # one measurement, in this fresh process
        a = json.loads(worker_args)
        if a.get("threads"):
            import torch

            torch.set_num_threads(a["threads"])
        click.echo(json.dumps(WORKERS[worker](parse_sizes(sizes)[0], a)))
        return
    if redraw:
        import pandas as pd

        rows = pd.read_csv(out / "scale.csv").to_dict("records")
        budgets = [r["budget"] for r in rows if r["component"] == "sample" and r["budget"] == r["budget"]]
        report(
            rows,
            sorted({int(r["size"]) for r in rows}),
            {"budget": int(max(budgets, default=budget)), "threads": int(rows[0].get("threads") or 0)},
            out,
        )
        return
    wanted = {c.strip() for c in components.split(",")}
    size_list = parse_sizes(sizes)
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=work)) if work is None or work.exists() else work
    scratch.mkdir(parents=True, exist_ok=True)
    args = {
        "work": str(scratch),
        "budget": budget,
        "threads": threads,
        "call_batch": 256,
        "gate_images": gate_images,
        "train_steps": train_steps,
        "lookup_batch": lookup_batch,
        "repeats": repeats,
        "in_process": in_process,
    }
    if in_process and threads:
        import torch

        torch.set_num_threads(threads)
    rows: list[dict] = []
    try:
        prepare(scratch, wanted)
        for n in size_list:
            click.echo(f"pool {n:,}", err=True)
            if "sample" in wanted:
                guess = predict_sample(rows, n)
                if guess is not None and guess["seconds"] > max_sample_s:
                    click.echo(
                        f"  sample at {n:,}: predicted {guess['seconds']:,.0f} s > --max-sample-s "
                        f"{max_sample_s:.0f}: extrapolated, not run",
                        err=True,
                    )
                    rows.append(guess)
                else:
                    rows += measure("sample", n, args)
            if "store" in wanted or "gate" in wanted:
                rows += [r for r in measure("store insert", n, args) if "store" in wanted]
                if "store" in wanted:
                    rows += measure("store read", n, args)
                if "gate" in wanted:
                    rows += measure("gate", n, args)
                shutil.rmtree(scratch / f"store-{n}", ignore_errors=True)
            if "augment" in wanted:
                rows += measure("augment", n, args)
            if "train" in wanted:
                rows += measure("train step", n, args)
    finally:
        if work is None or scratch != work:
            shutil.rmtree(scratch, ignore_errors=True)
    report(rows, size_list, args, out)


def prepare(scratch: Path, wanted: set[str]) -> None:
    """A fresh student of the size ``sample.features`` names (its pretraining's stand-in) and a built teacher."""
    if not wanted & {"sample", "gate"}:
        return
    import torch

    from pipeline.checkpoint import save_model
    from pipeline.models import create
    from tests.pipeline_copy import built_teacher, repo_params

    p = repo_params()
    torch.manual_seed(0)
    if p.sample.features != "pixels":
        sp = p.size(p.sample.features)
        save_model(scratch / "pretrained" / f"{p.sample.features}.pt", create(sp.arch, sp.dim, 1), sp.arch)
    built_teacher(scratch / "teacher", create(p.teacher.arch, DIM, 1), p.teacher.arch)


def report(rows: list[dict], sizes: list[int], args: dict, out: Path) -> None:
    from pipeline.io import atomic_write_bytes

    df = table(rows)
    verdicts = targets(rows, sizes)
    fits = largest_fitting(rows, SELECTION_TARGET_S)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "scale.csv", df.to_csv(index=False).encode())
    md = markdown(df, verdicts, args, fits, rows)
    atomic_write_bytes(out / "scale.md", md.encode())
    picture(df, out / "scale.png")
    click.echo(md)
    click.echo(f"written: {out / 'scale.csv'}, {out / 'scale.md'}, {out / 'scale.png'}")


if __name__ == "__main__":
    main()
