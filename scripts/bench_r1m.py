"""The evaluation stage at R1M size, synthetic: a million random 2048-d float16 descriptors on disk
(memory-mapped, as the teacher's test descriptors are stored), 70 queries (ROxford5k's count) with
revisited-style ground truth. Prints the time and peak memory of exact search + E/M/H mAP, and of an
IVF-PQ index (its build, search, recall@100 against exact search and the mAP it gives).

  python scripts/bench_r1m.py [--n 1000000] [--dim 2048] [--workdir bench/r1m]
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.retrieval.revisited import evaluate, summarize  # noqa: E402
from pipeline.retrieval.search import ivfpq_ranks, rank_database, recall_at  # noqa: E402


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic(path: Path, n: int, dim: int, n_queries: int, seed: int = 0):
    """Unit vectors; each query has 40 easy, 20 hard positives (near it) and 10 junk images."""
    rng = np.random.default_rng(seed)
    db = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
    for start in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        db[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gnd = []
    for q in range(n_queries):
        ids = rng.choice(n, 70, replace=False)
        for k, i in enumerate(ids):  # positives close to their query, junk a little less
            noise = 1.2 if k < 40 else 1.6 if k < 60 else 2.0
            v = queries[q] + noise * rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
            db[i] = v / np.linalg.norm(v)
        gnd.append({"easy": ids[:40], "hard": ids[40:60], "junk": ids[60:]})
    db.flush()
    return np.load(path, mmap_mode="r"), queries, gnd


@click.command()
@click.option("--n", default=1_000_000, show_default=True)
@click.option("--dim", default=2048, show_default=True)
@click.option("--queries", "n_queries", default=70, show_default=True)
@click.option("--workdir", default=Path("bench/r1m"), show_default=True, type=click.Path(path_type=Path))
@click.option("--ivf-lists", default=1024, show_default=True)
@click.option("--pq-m", default=64, show_default=True)
@click.option("--nprobe", default=32, show_default=True)
def main(n: int, dim: int, n_queries: int, workdir: Path, ivf_lists: int, pq_m: int, nprobe: int) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    db, queries, gnd = synthetic(workdir / "database.npy", n, dim, n_queries)
    click.echo(
        f"database: {n:,} x {dim} float16 on disk ({n * dim * 2 / 2**30:.1f} GiB), {n_queries} queries; "
        f"made in {time.perf_counter() - t0:.0f} s"
    )
    t0 = time.perf_counter()
    ranks = rank_database(db, queries)
    search = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = summarize(evaluate(ranks, gnd))
    scoring = time.perf_counter() - t0
    click.echo(
        f"exact:  search {search:.1f} s + E/M/H mAP {scoring:.1f} s; mAP E {exact['map_easy']:.4f} "
        f"M {exact['map_medium']:.4f} H {exact['map_hard']:.4f}; peak memory so far {peak_gib():.2f} GiB"
    )
    t0 = time.perf_counter()
    approx = ivfpq_ranks(db, queries, 1000, ivf_lists, pq_m, nprobe)
    ivf = time.perf_counter() - t0
    metrics = summarize(evaluate(approx, gnd))
    click.echo(
        f"ivfpq:  build + search {ivf:.1f} s (lists {ivf_lists}, {pq_m} bytes a vector, nprobe {nprobe}); "
        f"recall@100 against exact {recall_at(approx, ranks, 100):.3f}; mAP E {metrics['map_easy']:.4f} "
        f"M {metrics['map_medium']:.4f} H {metrics['map_hard']:.4f}; peak memory {peak_gib():.2f} GiB"
    )


if __name__ == "__main__":
    main()
