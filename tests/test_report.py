"""The report's table: mean and spread over seeds, ratio to the teacher, the best method per budget."""

import pandas as pd
import pytest

from pipeline.pictures import map_vs_budget, save_png
from pipeline.report import summary_table, to_markdown


def runs():
    maps = {
        ("derd", 60): [0.50, 0.54],
        ("derd", 300): [0.70, 0.72],
        ("supervised", 60): [0.40, 0.42],
        ("supervised", 300): [0.74, 0.76],
    }
    return [
        {"method": m, "budget": b, "seed": s, "map": v} for (m, b), values in maps.items() for s, v in enumerate(values)
    ]


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
    efficiency = {
        "teacher_parameters": 300000,
        "student_parameters": 30000,
        "teacher_flops_per_image": 4.4e7,
        "student_flops_per_image": 3.3e6,
        "teacher_images_per_second": 2000.0,
        "student_images_per_second": 20000.0,
        "throughput_ratio": 10.0,
        "device": "cpu",
    }
    md = to_markdown(df, 0.8, 300, 10000, efficiency)
    assert "| method | B=60 (0.1%) | B=300 (0.5%) |" in md
    assert "| derd | **0.5200 ± 0.0283 (65%)** | 0.7100 ± 0.0141 (89%) |" in md
    assert "| supervised | 0.4100 ± 0.0141 (51%) | **0.7500 ± 0.0141 (94%)** |" in md
    assert "Student throughput 10.0x the teacher's (10.0x fewer parameters, 13.3x fewer FLOPs)" in md
    queried = dict(efficiency, teacher_parameters=None, teacher_flops_per_image=None)
    row = "| teacher | n/a (queried teacher) | n/a (queried teacher) | 2,000 |"
    assert row in to_markdown(df, 0.8, 300, 10000, queried)
    save_png(map_vs_budget(df, 0.8), tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_the_throughput_ratio_says_how_it_was_measured():
    df = summary_table(runs(), 0.8, 60000, ["derd", "supervised"])
    built = {
        "teacher_parameters": 300000,
        "student_parameters": 30000,
        "teacher_flops_per_image": 4.4e7,
        "student_flops_per_image": 3.3e6,
        "teacher_images_per_second": 2000.0,
        "student_images_per_second": 12000.0,
        "device": "cpu",
        "threads": 1,
        "batch": 256,
        "throughput_method": "side-by-side",
        "throughput_ratio": 6.0,
        "throughput_ratio_min": 5.6,
        "throughput_ratio_max": 6.3,
        "throughput_repeats": 15,
        "served_teacher_images_per_second": 1500.0,
    }
    md = to_markdown(df, 0.8, 300, 10000, built)
    assert (
        "Student throughput 6.0x the teacher's (median of 15 side-by-side repeats, 5.6x to 6.3x; 10.0x fewer "
        "parameters, 13.3x fewer FLOPs), measured on cpu with 1 thread(s): teacher and student in one process, on "
        "the same 256 images, timed in turn."
    ) in md
    assert "That spread is this one process's" in md and "`make bench` runs the measurement in several" in md
    assert "answered calls through the gate ran at 1,500 images/s" in md and "not the ratio's" in md
    served = dict(
        built,
        teacher_parameters=None,
        teacher_flops_per_image=None,
        throughput_method="call timings",
        throughput_ratio=4.0,
        throughput_ratio_min=None,
        throughput_ratio_max=None,
        teacher_images_per_second=3000.0,
    )
    md = to_markdown(df, 0.8, 300, 10000, served)
    assert "Student throughput 4.0x the teacher's, measured on cpu, against the served teacher's call timings" in md
    assert "include the network" in md and "side-by-side repeats" not in md


def test_single_seed_has_no_spread_shown():
    one = [r for r in runs() if r["seed"] == 0]
    df = summary_table(one, 0.8, 60000, ["derd", "supervised"])
    assert (df["map_std"] == 0).all() and (df["seeds"] == 1).all()
    assert "±" not in to_markdown(df, 0.8, 300, 10000)


def _runs(cells: dict, size: str = "s") -> pd.DataFrame:
    """One row per (method, budget, seed) from {(method, budget): [map per seed]}."""
    return pd.DataFrame(
        [
            {"method": m, "budget": b, "size": size, "seed": k, "map": v}
            for (m, b), vals in cells.items()
            for k, v in enumerate(vals)
        ]
    )


EFF = {"teacher_flops_per_image": 4.0e7, "sizes": {"s": {"flops_per_image": 1.0e7, "images_per_second": 100.0}}}


def test_claims_follow_the_paired_noise_rule():
    from pipeline.claims import claims
    from pipeline.claims import to_markdown as claims_md

    runs = _runs(
        {
            ("derd", 60): [0.52, 0.54, 0.53],
            ("supervised", 60): [0.40, 0.45, 0.41],  # +0.11 +- 0.03: holds
            ("derd", 300): [0.70, 0.72, 0.71],
            ("supervised", 300): [0.74, 0.69, 0.70],  # 0 +- 0.04: noise
            ("derd-noaug", 60): [0.50, 0.56, 0.52],
            ("derd-noaug", 300): [0.60, 0.61, 0.62],
            ("derd", 3000): [0.77, 0.78, 0.79],
            ("supervised-full", "all"): [0.84, 0.83, 0.85],
        }
    )
    found = {c.title[:3]: c for c in claims(runs, 0.8, 60000, "derd", "s", EFF, ["derd", "derd-noaug"], [60])}
    assert found["(a)"].verdict == "within noise"  # holds at B=60, within noise at B=300
    assert "B=60: derd 0.5300 ± 0.0100 vs supervised 0.4200 ± 0.0265: difference +0.1100" in found["(a)"].evidence
    assert "(holds; 3 seeds)" in found["(a)"].evidence and "(within noise; 3 seeds)" in found["(a)"].evidence
    # (b) at B=60: per-seed differences +0.02, -0.02, +0.01: mean +0.0033, spread 0.02: within noise
    assert "difference +0.0033 ± 0.0208 (within noise; 3 seeds)" in found["(b)"].evidence
    assert found["(c)"].verdict == "does not hold" and "92.9% ± 1.2%" in found["(c)"].evidence  # per-seed ratios
    assert found["(e)"].verdict == "holds" and "4.0x fewer FLOPs" in found["(e)"].evidence  # 97.5% +- 1.2% >= 95%
    assert found["(g)"].verdict == "not measured" and found["(h)"].verdict == "not measured"
    text = claims_md(list(found.values()), seeds=3)
    assert "less their standard deviation over seeds" in text and "This run has 3 seeds" in text


def test_best_or_within_noise_of_the_best_is_decided_as_stated():
    from pipeline.claims import claims

    base = {
        ("rec", 60): [0.60, 0.61, 0.62],
        ("other", 60): [0.61, 0.60, 0.635],  # behind by 0.005 +- 0.015: noise
        ("rec", 300): [0.70, 0.71, 0.72],
        ("other", 300): [0.75, 0.76, 0.77],
    }  # behind beyond noise
    found = {c.title[:3]: c for c in claims(_runs(base), 0.8, 60000, "rec", "s", EFF, ["rec", "other"], [])}
    assert "B=60: rec 0.6100 ± 0.0100 vs the best other, other" in found["(d)"].evidence
    assert "(within noise of the best; 3 seeds)" in found["(d)"].evidence
    assert "B=300: rec 0.7100 ± 0.0100 vs other 0.7600 ± 0.0100: behind by 0.0500" in found["(d)"].evidence
    assert found["(d)"].verdict == "does not hold"
    base[("rec", 300)] = [0.76, 0.77, 0.78]
    found = {c.title[:3]: c for c in claims(_runs(base), 0.8, 60000, "rec", "s", EFF, ["rec", "other"], [])}
    assert found["(d)"].verdict == "holds"


def test_best_means_no_other_method_beats_it_beyond_noise():
    """The noisy method with the best mean is not the only rival: a steadier one that wins on every
    seed breaks (d); a method whose name starts like the recommended one's is still a rival."""
    from pipeline.claims import claims

    cells = {("rec", 60): [0.60, 0.61, 0.62], ("rec-noaug", 60): [0.70, 0.50, 0.75], ("B", 60): [0.63, 0.64, 0.65]}
    found = {c.title[:3]: c for c in claims(_runs(cells), 0.8, 60000, "rec", "s", EFF, ["rec"], [])}
    assert found["(d)"].verdict == "does not hold" and "vs B 0.6400 ± 0.0100: behind by 0.0300" in found["(d)"].evidence
    tie = _runs({("rec", 60): [0.6], ("B", 60): [0.6]})  # one seed: a tie is not behind
    assert {c.title[:3]: c for c in claims(tie, 0.8, 60000, "rec", "s", EFF, ["rec"], [])}["(d)"].verdict == "holds"


def test_the_levers_cells_are_shown_but_never_marked_best():
    rows = runs() + [{"method": "derd-random", "budget": 60, "seed": s, "map": 0.9} for s in (0, 1)]
    df = summary_table(rows, 0.8, 60000, ["derd", "supervised", "derd-random"], contenders=["derd", "supervised"])
    best = {(r.method, r.budget) for r in df.itertuples() if r.best}
    assert best == {("derd", 60), ("supervised", 300)} and "derd-random" in set(df["method"])


def test_the_levers_claims_and_a_single_seed_says_so():
    from pipeline.claims import claims

    cells = {
        ("rec", 60): [0.62, 0.63, 0.64],
        ("rec-nopool", 60): [0.58, 0.59, 0.60],  # +0.04 +- 0: holds
        ("rec-random", 60): [0.63, 0.60, 0.66],
    }  # +0.00 +- 0.03: noise
    found = {c.title[:3]: c for c in claims(_runs(cells), 0.8, 60000, "rec", "s", EFF, ["rec"], [60])}
    assert found["(g)"].verdict == "holds" and found["(h)"].verdict == "within noise"
    one = _runs({k: v[:1] for k, v in cells.items()})
    found = {c.title[:3]: c for c in claims(one, 0.8, 60000, "rec", "s", EFF, ["rec"], [60])}
    assert found["(g)"].verdict == "holds" and "**1 seed only: noise not measured**" in found["(g)"].evidence
    off = {"random": "sample.strategy is random: the subsets are random already (the lever is off)"}
    found = {c.title[:3]: c for c in claims(_runs(cells), 0.8, 60000, "rec", "s", EFF, ["rec"], [60], levers_off=off)}
    assert found["(h)"].verdict == "not measured" and "the lever is off" in found["(h)"].evidence


def test_targets_are_decided_on_unrounded_values():
    """3.96x fewer FLOPs is not "at least 4x", and 94.996% is not "at least 95%"."""
    from pipeline.claims import claims

    eff = {"teacher_flops_per_image": 3.96e7, "sizes": {"s": {"flops_per_image": 1.0e7, "images_per_second": 1.0}}}
    runs = _runs({("derd", 300): [0.99]})
    found = {c.title[:3]: c for c in claims(runs, 0.8, 60000, "derd", "s", eff, ["derd"], [])}
    assert found["(e)"].verdict == "not measured"  # 3.96x: no student is 4x cheaper
    eff["teacher_flops_per_image"] = 4.0e7
    runs = _runs({("derd", 300): [0.8 * 0.94996]})
    found = {c.title[:3]: c for c in claims(runs, 0.8, 60000, "derd", "s", eff, ["derd"], [])}
    assert found["(e)"].verdict == "does not hold"


@pytest.mark.parametrize(
    "override, skipped, off",
    [
        ({}, [], {}),
        ({"sample": {"strategy": "random"}}, [], {"random": "subsets are random already"}),
        ({}, ["ceiling: run is false"], {"random": "which were not asked for (ceiling: run is false)"}),
        ({"method": {"derd-plus": {"pool": "none"}}}, [], {"nopool": "method.derd-plus.pool is none"}),
    ],
)
def test_a_lever_that_cannot_be_measured_says_why(override, skipped, off):
    from pipeline.claims import levers_not_measured
    from tests.pipeline_copy import repo_params

    found = levers_not_measured(repo_params(override), skipped)
    assert sorted(found) == sorted(off) and all(text in found[k] for k, text in off.items())
