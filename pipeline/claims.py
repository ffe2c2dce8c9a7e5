"""The paper's claims and the project's targets, each decided from this run's numbers by a stated
rule, so that the verdicts never go stale: the report stage writes them to ``reports/claims.md``.

Noise rule: with two or more seeds, a difference between two cells counts only when it exceeds the
larger of their two standard deviations over seeds (sample std); a smaller one is "within noise".
With one seed there is no estimate of the noise, and every verdict says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class Claim:
    title: str
    verdict: str      # holds | does not hold | within noise | not measured
    evidence: str


def _cell(df: pd.DataFrame, method: str, budget) -> pd.Series | None:
    rows = df[(df["method"] == method) & (df["budget"] == budget)]
    return rows.iloc[0] if len(rows) else None


def _fmt(row) -> str:
    return f"{row.map_mean:.4f}" + (f" ± {row.map_std:.4f}" if row.seeds > 1 else "")


def _beats(a, b) -> tuple[str, float]:
    """Verdict of "a beats b" by the noise rule, and the difference of the means."""
    diff = a.map_mean - b.map_mean
    noise = max(a.map_std, b.map_std) if min(a.seeds, b.seeds) > 1 else 0.0
    if min(a.seeds, b.seeds) > 1 and abs(diff) <= noise:
        return "within noise", diff
    return ("holds" if diff > 0 else "does not hold"), diff


def claims(df: pd.DataFrame, frontier: pd.DataFrame, teacher_map: float, pool_size: int, recommended: str,
           student: str, efficiency: dict, distillers: list[str]) -> list[Claim]:
    """``distillers``: the methods that learn from the teacher (not from labels)."""
    budgets = sorted(df["budget"].unique())
    small = budgets[:2]
    out = []

    for title, a_name, b_name in (
            ("(a) At the two smallest budgets, the paper's ranking distillation (`derd`) beats the same student "
             "trained with the labels of the same B images (`supervised`)", "derd", "supervised"),
            ("(b) Interpolation in the representation space helps at small budgets (`derd` against `derd-noaug`, "
             "the same loss without virtual samples)", "derd", "derd-noaug")):
        verdicts, evidence = [], []
        for b in small:
            a, c = _cell(df, a_name, b), _cell(df, b_name, b)
            if a is None or c is None:
                verdicts.append("not measured")
                evidence.append(f"B={b}: {a_name} or {b_name} not in this run's methods")
                continue
            v, diff = _beats(a, c)
            verdicts.append(v)
            evidence.append(f"B={b}: {a_name} {_fmt(a)} vs {b_name} {_fmt(c)} ({diff:+.4f}, {v})")
        out.append(Claim(title, _combine(verdicts), "; ".join(evidence)))

    largest = budgets[-1]
    full = frontier[(frontier["budget"] == "all") & (frontier["size"] == student)]
    distilled = df[(df["budget"] == largest) & df["method"].isin(distillers)]
    best = distilled.sort_values("map_mean").iloc[-1] if len(distilled) else None
    title = (f"(c) With {100 * largest / pool_size:.3g}% of the pool, distillation reaches at least 98% of the same "
             f"student ({student}) trained on every labelled pool image (`supervised-full`)")
    if len(full) and best is not None:
        f = full.iloc[0]
        ratio = best.map_mean / f.map_mean
        out.append(Claim(title, "holds" if ratio >= 0.98 else "does not hold",
                         f"best at B={largest}: {best.method} {_fmt(best)}; supervised-full {f.map_mean:.4f}: "
                         f"{100 * ratio:.1f}%"))
    else:
        out.append(Claim(title, "not measured", "no supervised-full student of this size in this run"))

    verdicts, evidence = [], []
    for b in budgets:
        rows = df[df["budget"] == b].sort_values("map_mean")
        top, rec = rows.iloc[-1], _cell(df, recommended, b)
        if rec is None:
            verdicts.append("not measured")
            continue
        if rec.method == top.method:
            verdicts.append("holds")
            evidence.append(f"B={b}: {recommended} best, {_fmt(rec)}")
        else:
            v, diff = _beats(rec, top)
            verdicts.append("within noise" if v == "within noise" else "does not hold")
            evidence.append(f"B={b}: {recommended} {_fmt(rec)} vs best {top.method} {_fmt(top)} ({diff:+.4f})")
    out.append(Claim(f"(d) The recommended method (`{recommended}`) is the best, or within noise of the best, at every "
                     "budget", _combine(verdicts), "; ".join(evidence)))

    t_flops = efficiency.get("teacher_flops_per_image")
    cheap = frontier[(frontier["budget"] == largest) & (frontier["flops_fewer"] >= 4)] if t_flops else frontier.iloc[0:0]
    title = (f"(e) With {100 * largest / pool_size:.3g}% of the pool, a student at least 4x cheaper in FLOPs reaches "
             "at least 95% of the teacher's mAP")
    if len(cheap):
        top = cheap.sort_values("map_mean").iloc[-1]
        out.append(Claim(title, "holds" if top.ratio >= 0.95 else "does not hold",
                         f"{top['size']} ({top.flops_fewer:.1f}x fewer FLOPs): {top.map_mean:.4f} = {100 * top.ratio:.1f}% "
                         f"of the teacher's {teacher_map:.4f}; every size: " + ", ".join(
                             f"{r['size']} ({r.flops_fewer:.1f}x) {100 * r.ratio:.1f}%"
                             for _, r in frontier[frontier["budget"] == largest].iterrows())))
    else:
        out.append(Claim(title, "not measured", "no student size at least 4x cheaper (or a queried teacher of unknown "
                         "FLOPs) in this run"))

    rec = _cell(df, recommended, largest)
    title = (f"(f) Deployed asymmetrically (queries by the student, the database described once by the teacher), the "
             f"recommended method's {student} student at {100 * largest / pool_size:.3g}% of the pool reaches at least "
             "95% of the teacher's mAP")
    if rec is not None and rec.asym_mean == rec.asym_mean:
        ratio = rec.asym_mean / teacher_map
        out.append(Claim(title, "holds" if ratio >= 0.95 else "does not hold",
                         f"{recommended} asymmetric {rec.asym_mean:.4f} = {100 * ratio:.1f}% of the teacher's "
                         f"{teacher_map:.4f} (symmetric {rec.map_mean:.4f} = {100 * rec.map_mean / teacher_map:.1f}%)"))
    else:
        out.append(Claim(title, "not measured", f"{recommended} learns no projection to the teacher's space"))
    return out


def _combine(verdicts: list[str]) -> str:
    if not verdicts or all(v == "not measured" for v in verdicts):
        return "not measured"
    if all(v == "holds" for v in verdicts):
        return "holds"
    if "does not hold" in verdicts:
        return "does not hold"
    return "within noise" if "within noise" in verdicts else "partly measured"


def to_markdown(items: list[Claim], seeds: int) -> str:
    rule = ("a difference counts when it exceeds the larger of the two cells' standard deviations over the "
            f"{seeds} seeds; a smaller one is *within noise*" if seeds > 1 else
            "**one seed only**: this run cannot measure its noise, so the verdicts compare single runs "
            "(run `make compare` for three seeds)")
    lines = ["# The paper's claims, decided by this run", "",
             f"Generated by the report stage from this run's metrics. Noise rule: {rule}. mAP is the revisited "
             "protocol's Medium mAP.", ""]
    for c in items:
        lines += [f"- **{c.title}: {c.verdict}.**", f"  {c.evidence}", ""]
    return "\n".join(lines)
