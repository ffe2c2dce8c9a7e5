"""The report's table: mean and spread over seeds, ratio to the teacher, the best method per budget."""
import pandas as pd
import pytest

from pipeline.report import plot_map_vs_budget, summary_table, to_markdown


def runs():
    maps = {("derd", 60): [0.50, 0.54], ("derd", 300): [0.70, 0.72],
            ("supervised", 60): [0.40, 0.42], ("supervised", 300): [0.74, 0.76]}
    return [{"method": m, "budget": b, "seed": s, "map": v}
            for (m, b), values in maps.items() for s, v in enumerate(values)]


def test_cells_are_mean_and_sample_std_over_seeds_with_the_best_marked():
    df = summary_table(runs(), teacher_map=0.8, pool_size=60000, methods=["supervised", "derd"])
    assert df["method"].tolist() == ["supervised", "supervised", "derd", "derd"]  # params.yaml's order
    derd60 = df[(df["method"] == "derd") & (df["budget"] == 60)].iloc[0]
    assert derd60["map_mean"] == pytest.approx(0.52) and derd60["map_std"] == pytest.approx(0.0283, abs=1e-4)
    assert derd60["ratio"] == pytest.approx(0.65) and derd60["seeds"] == 2 and derd60["pool_percent"] == 0.1
    best = {(r.method, r.budget) for r in df.itertuples() if r.best}
    assert best == {("derd", 60), ("supervised", 300)}


def test_markdown_and_plot(tmp_path):
    df = summary_table(runs(), 0.8, 60000, ["derd", "supervised"])
    efficiency = {"teacher_parameters": 300000, "student_parameters": 30000, "teacher_flops_per_image": 4.4e7,
                  "student_flops_per_image": 3.3e6, "teacher_images_per_second": 2000.0,
                  "student_images_per_second": 20000.0, "throughput_ratio": 10.0, "device": "cpu"}
    md = to_markdown(df, 0.8, 300, 10000, efficiency)
    assert "| method | B=60 (0.1%) | B=300 (0.5%) |" in md
    assert "| derd | **0.5200 ± 0.0283 (65%)** | 0.7100 ± 0.0141 (89%) |" in md
    assert "| supervised | 0.4100 ± 0.0141 (51%) | **0.7500 ± 0.0141 (94%)** |" in md
    assert "Student throughput 10.0x the teacher's (10.0x fewer parameters, 13.3x fewer FLOPs)" in md
    plot_map_vs_budget(df, 0.8, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_single_seed_has_no_spread_shown():
    one = [r for r in runs() if r["seed"] == 0]
    df = summary_table(one, 0.8, 60000, ["derd", "supervised"])
    assert (df["map_std"] == 0).all() and (df["seeds"] == 1).all()
    assert "±" not in to_markdown(df, 0.8, 300, 10000)
    assert isinstance(df, pd.DataFrame)
