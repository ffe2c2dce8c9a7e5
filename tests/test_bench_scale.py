"""`make bench-scale` at a tiny size: every component measured, with positive figures, and its three
files written; the measurements run in processes of their own (checked on the store's, which are quick)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def bench(out: Path, *options: str) -> pd.DataFrame:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_scale.py"),
            "--sizes",
            "1000",
            "--budget",
            "100",
            "--threads",
            "1",
            "--repeats",
            "1",
            "--out",
            str(out),
            *options,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_csv(out / "scale.csv")


@pytest.mark.trains  # its measurements include a training step
def test_bench_scale_measures_every_component(tmp_path):
    out = tmp_path / "bench"
    df = bench(out, "--in-process", "--gate-images", "256", "--train-steps", "2")
    assert set(df["component"]) == {
        "sample",
        "store insert",
        "store open",
        "store lookup",
        "dict lookup",
        "gate",
        "augment",
        "train step",
    }
    assert (df["size"] == 1000).all() and df["measured"].all()
    assert (df["seconds"] > 0).all() and (df["peak_mb"] >= 0).all()
    assert (df.dropna(subset=["per_second"])["per_second"] > 0).all()
    sample = df[df["component"] == "sample"].iloc[0]
    assert sample["budget"] == 100 and min(sample["embed_s"], sample["typicality_s"], sample["greedy_s"]) > 0
    md = (out / "scale.md").read_text()
    assert "## Targets" in md and "selection within 2 minutes at 10^6" in md
    assert (out / "scale.png").read_bytes()[:4] == b"\x89PNG"


def test_each_measurement_runs_in_a_process_of_its_own(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "scripts" / "bench_scale.py")
    bench_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_scale)
    args = {"work": str(tmp_path), "threads": 1, "call_batch": 256, "repeats": 2, "in_process": False}
    args["lookup_batch"] = 300  # 4 requests of the 1,000 keys
    rows = bench_scale.measure("store insert", 1000, args) + bench_scale.measure("store read", 1000, args)
    assert [r["component"] for r in rows] == ["store insert", "store open", "store lookup", "dict lookup"]
    assert all(r["seconds"] > 0 and r["measured"] for r in rows)
    assert rows[0]["calls"] == 4 and rows[0]["per_second"] > 0 and rows[2]["vs_dict"] > 0
    look = rows[2]
    assert look["request"] == 300 and look["vs_dict_min"] > 0
    assert look["whole_vs_dict"] > 0 and "in requests of 300 keys" in bench_scale.details(look)


def test_the_selection_note_at_a_million_says_what_a_cluster_would_need():
    """The approximate branch of the note (a 10^6 row is measured only by `make bench-scale` itself):
    the parts that split by image and by list (the embedding, the typicality less its index's training) over the
    fewest workers that bring the whole within the target; what does not split stays as it is."""
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "scripts" / "bench_scale.py")
    bench_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_scale)
    row = {"component": "sample", "size": 10**6, "measured": True, "neighbours": "approximate", "seconds": 280.0}
    row |= {"embed_s": 95.0, "typicality_s": 165.0, "index_s": 5.0, "greedy_s": 12.0}
    note = bench_scale.selection_note([row], 100_000)
    # split: 95 + 165 - 5 = 255 s; alone: 280 - 255 = 25 s; 255 / (120 - 25) = 2.7 -> 3 workers, 85 s + 25 s
    assert "embedding 95 s, typicality\n165 s, greedy order 12 s" in note
    assert "(255 s here) split by image and by list, so 3 workers" in note and "the selection about 110 s" in note
    assert "(the index's training, the greedy order and the rest, 25 s, stay on one machine)" in note
    assert "over the 120 s target" in bench_scale.selection_note([row | {"seconds": 400.0}], 100_000)
    fits = row | {"seconds": 110.0, "embed_s": 20.0, "typicality_s": 80.0}
    assert "It fits the 120 s target" in bench_scale.selection_note([fits], 1)
