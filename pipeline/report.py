"""The answer a user reads: which method retrieves best at each budget, against the teacher.

Each cell is the mean over seeds with its standard deviation (sample, ddof=1), so that a difference
can be told from noise; the best mean per budget is marked.
"""
from __future__ import annotations

import pandas as pd



def summary_table(runs: list[dict], teacher_map: float, pool_size: int, methods: list[str]) -> pd.DataFrame:
    """One row per (method, budget) from per-run metrics dicts (each with budget, method, seed, map)."""
    df = pd.DataFrame(runs)
    g = df.groupby(["method", "budget"])["map"]
    out = g.agg(map_mean="mean", map_std="std", seeds="count").reset_index()
    out["map_std"] = out["map_std"].fillna(0.0)
    out["pool_percent"] = (100 * out["budget"] / pool_size).round(3)
    out["ratio"] = (out["map_mean"] / teacher_map).round(4)
    out["teacher_map"] = round(teacher_map, 4)
    best = out.groupby("budget")["map_mean"].transform("max")
    out["best"] = out["map_mean"] == best
    out["method"] = pd.Categorical(out["method"], categories=methods, ordered=True)
    out = out.sort_values(["method", "budget"]).reset_index(drop=True)
    out["method"] = out["method"].astype(str)
    out["map_mean"], out["map_std"] = out["map_mean"].round(4), out["map_std"].round(4)
    return out[["method", "budget", "pool_percent", "seeds", "map_mean", "map_std", "ratio", "teacher_map", "best"]]


def _cell(row) -> str:
    text = f"{row.map_mean:.4f}"
    if row.seeds > 1:
        text += f" ± {row.map_std:.4f}"
    text += f" ({100 * row.ratio:.0f}%)"
    return f"**{text}**" if row.best else text


def to_markdown(df: pd.DataFrame, teacher_map: float, train_queries: int, test_queries: int,
                efficiency: dict | None = None) -> str:
    budgets = sorted(df["budget"].unique())
    pct = {b: df.loc[df["budget"] == b, "pool_percent"].iloc[0] for b in budgets}
    seeds = sorted(df["seeds"].unique())
    lines = [f"mAP (Medium protocol) per method and teacher query budget B; teacher mAP {teacher_map:.4f}. "
             f"Each cell: mean{' ± std over ' + '/'.join(map(str, seeds)) + ' seeds' if max(seeds) > 1 else ''} "
             "(% of the teacher); best per budget in bold.", "",
             "| method | " + " | ".join(f"B={b} ({pct[b]:g}%)" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for method, rows in df.groupby("method", sort=False):
        cells = {r.budget: _cell(r) for r in rows.itertuples()}
        lines.append(f"| {method} | " + " | ".join(cells.get(b, "") for b in budgets) + " |")
    lines += ["", f"Teacher queries for training (ledger): {train_queries}; "
              f"for evaluating the teacher, counted apart: {test_queries}. "
              "`supervised` uses no teacher query: it reads the same B images' labels."]
    if efficiency:
        e = efficiency

        def fmt(value, scale=1.0, spec=",.0f"):
            return "n/a (queried teacher)" if value is None else format(value / scale, spec)

        lines += ["", "| model | parameters | MFLOPs / image | descriptors / s |", "|---|---|---|---|"]
        for who in ("teacher", "student"):
            lines.append(f"| {who} | {fmt(e[who + '_parameters'])} | {fmt(e[who + '_flops_per_image'], 1e6, '.2f')} | "
                         f"{fmt(e[who + '_images_per_second'])} |")
        ratios = []
        if e["teacher_parameters"]:
            ratios.append(f"{e['teacher_parameters'] / e['student_parameters']:.1f}x fewer parameters")
        if e["teacher_flops_per_image"]:
            ratios.append(f"{e['teacher_flops_per_image'] / e['student_flops_per_image']:.1f}x fewer FLOPs")
        lines += ["", f"Student throughput {e['throughput_ratio']}x the teacher's"
                  + (f" ({', '.join(ratios)})" if ratios else "")
                  + f", measured on {e['device']}; the teacher's from the gate's timings of its answered calls."]
    return "\n".join(lines) + "\n"
