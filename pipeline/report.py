"""The answer a user reads: which method retrieves best at each budget, against the teacher.

Each cell is the mean over seeds with its standard deviation (sample, ddof=1), so that a difference
can be told from noise; the best mean per budget is marked. Values stay unrounded (verdicts are
decided on them); only what is printed or written is rounded.
"""

from __future__ import annotations

import pandas as pd


def summary_table(
    runs: list[dict], teacher_map: float, pool_size: int, methods: list[str], contenders: list[str] | None = None
) -> pd.DataFrame:
    """One row per (method, budget) from per-run metrics dicts (each with budget, method, seed, map;
    ``asym_map`` where the student was also evaluated against the teacher's database). The best
    per budget is marked among ``contenders`` (default: every method); the levers' cells are shown,
    never marked."""
    df = pd.DataFrame(runs)
    g = df.groupby(["method", "budget"])
    out = g["map"].agg(map_mean="mean", map_std="std", seeds="count").reset_index()
    out["map_std"] = out["map_std"].fillna(0.0)
    if "asym_map" in df:
        asym = g["asym_map"].agg(asym_mean="mean", asym_std="std").reset_index()
        out = out.merge(asym, on=["method", "budget"])
        out["asym_std"] = out["asym_std"].fillna(0.0)
    else:
        out["asym_mean"], out["asym_std"] = float("nan"), float("nan")
    out["pool_percent"] = (100 * out["budget"] / pool_size).round(3)
    out["ratio"] = out["map_mean"] / teacher_map
    out["teacher_map"] = teacher_map
    racing = out["method"].isin(contenders if contenders is not None else methods)
    best = out[racing].groupby("budget")["map_mean"].max()
    out["best"] = racing & (out["map_mean"] == out["budget"].map(best))
    out["method"] = pd.Categorical(out["method"], categories=methods, ordered=True)
    out = out.sort_values(["method", "budget"]).reset_index(drop=True)
    out["method"] = out["method"].astype(str)
    return out[
        [
            "method",
            "budget",
            "pool_percent",
            "seeds",
            "map_mean",
            "map_std",
            "ratio",
            "teacher_map",
            "best",
            "asym_mean",
            "asym_std",
        ]
    ]


def size_table(
    runs: list[dict], full: list[dict], efficiency: dict, teacher_map: float, ceiling: list[dict] = (), method: str = ""
) -> pd.DataFrame:
    """The frontier: one row per (student size, budget) of the recommended method ``method``, with the
    size's cost; the same size trained on every label (budget ``all``, method ``supervised-full``) and
    distilled with every pool image answered (budget ``pool``, the ceiling). Each row names its method."""
    rows = []
    for source, budget_of, label in (
        (runs, lambda r: r["budget"], method),
        (full, lambda r: "all", "supervised-full"),
        (ceiling, lambda r: "pool", f"{method}-ceiling"),
    ):
        if not source:
            continue
        df = pd.DataFrame(source)
        df["budget"] = [budget_of(r) for r in source]
        agg = df.groupby(["size", "budget"])["map"].agg(map_mean="mean", map_std="std", seeds="count").reset_index()
        agg.insert(0, "method", label)
        rows.append(agg)
    out = pd.concat(rows, ignore_index=True)
    out["map_std"] = out["map_std"].fillna(0.0)
    out["ratio"] = out["map_mean"] / teacher_map
    sizes = efficiency.get("sizes", {})
    t_flops = efficiency.get("teacher_flops_per_image")
    out["mflops"] = [sizes[s]["flops_per_image"] / 1e6 for s in out["size"]]
    out["flops_fewer"] = [t_flops / sizes[s]["flops_per_image"] if t_flops else float("nan") for s in out["size"]]
    out["images_per_second"] = [sizes[s]["images_per_second"] for s in out["size"]]
    return out


def _cell(row) -> str:
    text = f"{row.map_mean:.4f}"
    if row.seeds > 1:
        text += f" ± {row.map_std:.4f}"
    text += f" ({100 * row.ratio:.0f}%)"
    return f"**{text}**" if row.best else text


def frontier_markdown(frontier: pd.DataFrame, method: str) -> str:
    """mAP per student size and budget (the recommended method), with each size's cost."""
    budgets = [b for b in frontier["budget"].unique() if b not in ("all", "pool")]
    extra = [
        (key, head)
        for key, head in (("all", "all labels, no teacher"), ("pool", "every pool image answered (ceiling)"))
        if (frontier["budget"] == key).any()
    ]
    lines = [
        f"`{method}` at every student size (mAP, % of the teacher), each size trained on every label, and the "
        "distillation ceiling (the same method with every training-pool image answered: what distillation can "
        "reach; reported, never recommended):",
        "",
        "| size | MFLOPs / image | descriptors / s | "
        + " | ".join(f"B={b}" for b in budgets)
        + "".join(f" | {head}" for _, head in extra)
        + " |",
        "|---|---|---|" + "---|" * (len(budgets) + len(extra)),
    ]
    for size, rows in frontier.groupby("size", sort=False):
        r0 = rows.iloc[0]
        fewer = f" ({r0.flops_fewer:.1f}x fewer)" if r0.flops_fewer == r0.flops_fewer else ""
        cells = {
            r.budget: f"{r.map_mean:.4f}" + (f" ± {r.map_std:.4f}" if r.seeds > 1 else "") + f" ({100 * r.ratio:.0f}%)"
            for r in rows.itertuples()
        }
        lines.append(
            f"| {size} | {r0.mflops:.2f}{fewer} | {r0.images_per_second:,.0f} | "
            + " | ".join(cells.get(b, "") for b in budgets + [key for key, _ in extra])
            + " |"
        )
    return "\n".join(lines) + "\n"


def to_markdown(
    df: pd.DataFrame, teacher_map: float, train_queries: int, test_queries: int, efficiency: dict | None = None
) -> str:
    budgets = sorted(df["budget"].unique())
    pct = {b: df.loc[df["budget"] == b, "pool_percent"].iloc[0] for b in budgets}
    seeds = sorted(df["seeds"].unique())
    lines = [
        f"mAP (Medium protocol) per method and teacher query budget B; teacher mAP {teacher_map:.4f}. "
        f"Each cell: mean{' ± std over ' + '/'.join(map(str, seeds)) + ' seeds' if max(seeds) > 1 else ''} "
        "(% of the teacher); best per budget in bold.",
        "",
        "| method | " + " | ".join(f"B={b} ({pct[b]:g}%)" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for method, rows in df.groupby("method", sort=False):
        cells = {r.budget: _cell(r) for r in rows.itertuples()}
        lines.append(f"| {method} | " + " | ".join(cells.get(b, "") for b in budgets) + " |")
    asym = df[df["asym_mean"].notna()] if "asym_mean" in df else df.iloc[0:0]
    if len(asym):
        lines += [
            "",
            "Asymmetric retrieval, as such students are deployed (queries by the student, projected to the "
            "teacher's space; the database described once by the teacher):",
            "",
            "| method | " + " | ".join(f"B={b}" for b in budgets) + " |",
            "|---|" + "---|" * len(budgets),
        ]
        for method, rows in asym.groupby("method", sort=False):
            cells = {
                r.budget: f"{r.asym_mean:.4f}"
                + (f" ± {r.asym_std:.4f}" if r.seeds > 1 else "")
                + f" (symmetric {r.map_mean:.4f})"
                for r in rows.itertuples()
            }
            lines.append(f"| {method} | " + " | ".join(cells.get(b, "") for b in budgets) + " |")
    lines += [
        "",
        f"Teacher queries for training (ledger): {train_queries}; "
        f"for evaluating the teacher, counted apart: {test_queries}. "
        "`supervised` uses no teacher query: it reads the same B images' labels.",
    ]
    if efficiency:
        e = efficiency

        def fmt(value, scale=1.0, spec=",.0f"):
            return "n/a (queried teacher)" if value is None else format(value / scale, spec)

        lines += ["", "| model | parameters | MFLOPs / image | descriptors / s |", "|---|---|---|---|"]
        for who in ("teacher", "student"):
            lines.append(
                f"| {who} | {fmt(e[who + '_parameters'])} | {fmt(e[who + '_flops_per_image'], 1e6, '.2f')} | "
                f"{fmt(e[who + '_images_per_second'])} |"
            )
        ratios = []
        if e["teacher_parameters"]:
            ratios.append(f"{e['teacher_parameters'] / e['student_parameters']:.1f}x fewer parameters")
        if e["teacher_flops_per_image"]:
            ratios.append(f"{e['teacher_flops_per_image'] / e['student_flops_per_image']:.1f}x fewer FLOPs")
        lines += ["", throughput_sentence(e, ratios)]
    return "\n".join(lines) + "\n"


def throughput_sentence(e: dict, ratios: list[str]) -> str:
    """The student/teacher throughput ratio as measured: side by side with its spread, or from a served
    teacher's call timings (the network included), said so."""
    method = e.get("throughput_method")
    if e.get("throughput_ratio") is None:
        return "Student throughput against the teacher's: not measured (no timed teacher call)."
    if method == "side-by-side":
        spread = (
            f"median of {e['throughput_repeats']} side-by-side repeats, {e['throughput_ratio_min']}x to "
            f"{e['throughput_ratio_max']}x"
        )
        text = (
            f"Student throughput {e['throughput_ratio']}x the teacher's ({spread}"
            + (f"; {', '.join(ratios)}" if ratios else "")
            + f"), measured on {e['device']}"
            + (f" with {e['threads']} thread(s)" if e.get("threads") and e["device"] == "cpu" else "")
            + ": teacher and student in one process, on the same "
            + (f"{e['batch']} " if e.get("batch") else "")
            + "images, timed in turn. That spread is this one process's: one started at another time can read "
            "differently (`make bench` runs the measurement in several and prints their spread)."
        )
        if e.get("served_teacher_images_per_second"):
            text += (
                " The teacher's answered calls through the gate ran at "
                f"{e['served_teacher_images_per_second']:,.0f} images/s (timed when made, the first cold): a "
                "separate figure, not the ratio's."
            )
        return text
    if method == "call timings":
        return (
            f"Student throughput {e['throughput_ratio']}x the teacher's"
            + (f" ({', '.join(ratios)})" if ratios else "")
            + f", measured on {e['device']}, against the served teacher's call timings, which include the network "
            "(a teacher reachable only by queries cannot be timed side by side): not like for like."
        )
    return (
        f"Student throughput {e['throughput_ratio']}x the teacher's"
        + (f" ({', '.join(ratios)})" if ratios else "")
        + f", measured on {e['device']}; the teacher's from the gate's timings of its answered calls."
    )


def ceiling_markdown(
    frontier: pd.DataFrame, summary: pd.DataFrame, method: str, size: str, skipped: list[str] = ()
) -> str:
    """How much of what distillation can reach (the ceiling) each budget buys, at the compared size."""
    row = frontier[(frontier["budget"] == "pool") & (frontier["size"] == size)]
    if not len(row):
        why = f" ({'; '.join(skipped)})" if skipped else ""
        return f"\nDistillation ceiling: not measured in this run{why}.\n"
    top = row.iloc[0]
    cells = summary[summary["method"] == method]
    parts = ", ".join(f"B={r.budget} {100 * r.map_mean / top.map_mean:.0f}%" for r in cells.itertuples())
    return (
        f"\nDistillation ceiling ({size}, `{method}` with every training-pool image answered, its queries apart "
        f"from the budget, trained for ceiling.steps): {top.map_mean:.4f} ({100 * top.ratio:.0f}% of the teacher). "
        f"Share of it each budget buys: {parts}.\n"
    )
