"""The paper's claims and the project's targets, each decided from this run's numbers by a stated
rule, so that the verdicts never go stale: the report stage writes them to ``reports/claims.md``.

Noise rule (paired over seeds: cells with the same seed share their subset order, virtual samples
and initial weights): for each seed both cells have, take the difference (or the ratio, for a
target); a claim *holds* when the mean of those per-seed values, less their sample standard
deviation, clears the threshold; it *does not hold* when the mean plus that deviation stays short
of it; otherwise it is *within noise*. Fewer than ``MIN_SEEDS`` seeds cannot measure the noise: the
verdict then compares the means and its line says on how many seeds it was decided.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

MIN_SEEDS = 3

RULE = (
    "paired over seeds: a claim holds when the mean of its per-seed differences (or ratios, for a target), "
    "less their standard deviation over seeds, clears the threshold; it does not hold when the mean plus "
    "that deviation stays short of it; otherwise it is *within noise*. A cell decided on fewer than "
    f"{MIN_SEEDS} seeds says so"
)


@dataclass
class Claim:
    title: str
    verdict: str  # holds | does not hold | within noise | not measured
    evidence: str


@dataclass(frozen=True)
class Paired:
    """Per-seed values of one comparison (a - b, or a / reference)."""

    mean: float
    spread: float  # sample standard deviation over seeds; 0 with one seed
    seeds: int

    def decide(self, threshold: float = 0.0) -> str:
        if self.seeds < MIN_SEEDS:
            return "holds" if self.mean > threshold else "does not hold"
        if self.mean - self.spread > threshold:
            return "holds"
        if self.mean + self.spread < threshold:
            return "does not hold"
        return "within noise"

    def note(self) -> str:
        if self.seeds >= MIN_SEEDS:
            return f"{self.seeds} seeds"
        return f"**{self.seeds} seed{'s' if self.seeds > 1 else ''} only: noise not measured**"


def values(runs: pd.DataFrame, method: str, budget, size: str, column: str = "map") -> pd.Series:
    """One cell's metric per seed (empty when the run has no such cell)."""
    rows = runs[(runs["method"] == method) & (runs["budget"].astype(str) == str(budget)) & (runs["size"] == size)]
    return rows.set_index("seed")[column].dropna().sort_index() if column in rows else pd.Series(dtype=float)


def paired(a: pd.Series, b: pd.Series | float, ratio: bool = False) -> Paired | None:
    """a - b (or a / b) per seed both have; ``b`` a number: a fixed reference (the teacher's mAP)."""
    if not isinstance(b, pd.Series):
        b = pd.Series(b, index=a.index)
    seeds = a.index.intersection(b.index)
    if not len(seeds):
        return None
    d = (a[seeds] / b[seeds]) if ratio else (a[seeds] - b[seeds])
    return Paired(float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0, len(d))


def fmt(v: pd.Series) -> str:
    return f"{v.mean():.4f}" + (f" ± {v.std(ddof=1):.4f}" if len(v) > 1 else "")


def _beats(runs, size, a_name, b_name, budgets, what) -> Claim:
    verdicts, evidence = [], []
    for b in budgets:
        a, c = values(runs, a_name, b, size), values(runs, b_name, b, size)
        p = paired(a, c) if len(a) and len(c) else None
        if p is None:
            verdicts.append("not measured")
            evidence.append(f"B={b}: {a_name} or {b_name} not in this run")
            continue
        v = p.decide()
        verdicts.append(v)
        evidence.append(
            f"B={b}: {a_name} {fmt(a)} vs {b_name} {fmt(c)}: difference {p.mean:+.4f} ± {p.spread:.4f} "
            f"({v}; {p.note()})"
        )
    return Claim(what, _combine(verdicts), "; ".join(evidence))


def claims(
    runs: pd.DataFrame,
    teacher_map: float,
    pool_size: int,
    recommended: str,
    student: str,
    efficiency: dict,
    distillers: list[str],
    lever_budgets: list[int],
    contenders: list[str] | None = None,
    levers_off: dict[str, str] | None = None,
) -> list[Claim]:
    """``runs``: one row per trained cell and seed (method, budget, size, seed, map, asym_map).
    ``distillers``: the methods that learn from the teacher (not from labels); ``contenders``: the
    methods (d) compares (default: every method but the levers' and the ceiling's cells);
    ``levers_off``: why a lever's claim cannot be measured (e.g. the strategy is random already)."""
    levers_off = levers_off or {}
    if contenders is None:
        contenders = [
            m
            for m in dict.fromkeys(runs["method"])
            if m not in {f"{recommended}-{x}" for x in ("nopool", "random", "ceiling")}
        ]
    runs = runs.copy()
    runs["budget"] = runs["budget"].astype(str)
    numeric = sorted({int(b) for b in runs["budget"] if b.isdigit()})
    small, largest = numeric[:2], numeric[-1]
    pct = f"{100 * largest / pool_size:.3g}%"
    out = [
        _beats(
            runs,
            student,
            "derd",
            "supervised",
            small,
            "(a) At the two smallest budgets, the paper's ranking distillation (`derd`) beats the same student "
            "trained with the labels of the same B images (`supervised`, the same start)",
        ),
        _beats(
            runs,
            student,
            "derd",
            "derd-noaug",
            small,
            "(b) Interpolation in the representation space helps at small budgets (`derd` against `derd-noaug`, "
            "the same loss without virtual samples)",
        ),
    ]

    full = values(runs, "supervised-full", "all", student)
    title = (
        f"(c) With {pct} of the pool, distillation reaches at least 98% of the same student ({student}) trained "
        "on every labelled pool image (`supervised-full`)"
    )
    best = max(
        distillers,
        key=lambda m: values(runs, m, largest, student).mean() if len(values(runs, m, largest, student)) else -1.0,
        default=None,
    )
    cell = values(runs, best, largest, student) if best else pd.Series(dtype=float)
    p = paired(cell, full, ratio=True) if len(full) and len(cell) else None
    if p is None:
        out.append(Claim(title, "not measured", "no supervised-full student of this size in this run"))
    else:
        out.append(
            Claim(
                title,
                p.decide(0.98),
                f"best at B={largest}: {best} {fmt(cell)}; supervised-full "
                f"{fmt(full)}: {100 * p.mean:.1f}% ± {100 * p.spread:.1f}% ({p.note()})",
            )
        )

    verdicts, evidence = [], []
    methods = [m for m in dict.fromkeys(runs.loc[runs["size"] == student, "method"]) if m in contenders]
    for b in numeric:
        rec = values(runs, recommended, b, student)
        others = {m: values(runs, m, b, student) for m in methods if m != recommended}
        others = {m: v for m, v in others.items() if len(v)}
        if not len(rec) or not others:
            verdicts.append("not measured")
            continue
        # behind when any other method beats it beyond noise (on fewer seeds: by its mean)
        ahead = {m: p for m, v in others.items() if (p := paired(v, rec)) is not None and p.decide() == "holds"}
        top = max(others, key=lambda m: others[m].mean())
        p = paired(rec, others[top])
        if ahead:
            m = max(ahead, key=lambda k: ahead[k].mean)
            verdicts.append("does not hold")
            evidence.append(
                f"B={b}: {recommended} {fmt(rec)} vs {m} {fmt(others[m])}: behind by {ahead[m].mean:.4f} "
                f"± {ahead[m].spread:.4f} ({ahead[m].note()})"
            )
            continue
        verdicts.append("holds" if p is not None else "not measured")
        standing = "best" if rec.mean() >= others[top].mean() else "within noise of the best"
        evidence.append(
            f"B={b}: {recommended} {fmt(rec)} vs the best other, {top} {fmt(others[top])}"
            + (f": {p.mean:+.4f} ± {p.spread:.4f} ({standing}; {p.note()})" if p else ": no common seed")
        )
    out.append(
        Claim(
            f"(d) The recommended method (`{recommended}`) is the best, or within noise of the best, at every budget",
            _combine(verdicts),
            "; ".join(evidence),
        )
    )

    t_flops = efficiency.get("teacher_flops_per_image")
    sizes = efficiency.get("sizes", {})
    cheap = [
        z
        for z in sorted(set(runs["size"]))
        if t_flops
        and z in sizes
        and t_flops / sizes[z]["flops_per_image"] >= 4
        and len(values(runs, recommended, largest, z))
    ]
    title = (
        f"(e) With {pct} of the pool, a student at least 4x cheaper in FLOPs reaches at least 95% of the teacher's mAP"
    )
    if cheap:
        top = max(cheap, key=lambda z: values(runs, recommended, largest, z).mean())
        v = values(runs, recommended, largest, top)
        p = paired(v, teacher_map, ratio=True)
        every = ", ".join(
            f"{z} ({t_flops / sizes[z]['flops_per_image']:.1f}x) "
            f"{100 * values(runs, recommended, largest, z).mean() / teacher_map:.1f}%"
            for z in cheap
        )
        out.append(
            Claim(
                title,
                p.decide(0.95),
                f"{top} ({t_flops / sizes[top]['flops_per_image']:.1f}x fewer FLOPs): "
                f"{fmt(v)} = {100 * p.mean:.1f}% ± {100 * p.spread:.1f}% of the teacher's {teacher_map:.4f} "
                f"({p.note()}); every size at least 4x cheaper: {every}",
            )
        )
    else:
        out.append(
            Claim(
                title,
                "not measured",
                "no student size at least 4x cheaper (or a queried teacher of unknown FLOPs) in this run",
            )
        )

    asym = values(runs, recommended, largest, student, "asym_map")
    title = (
        f"(f) Deployed asymmetrically (queries by the student, the database described once by the teacher), the "
        f"recommended method's {student} student at {pct} of the pool reaches at least 95% of the teacher's mAP"
    )
    if len(asym):
        p = paired(asym, teacher_map, ratio=True)
        sym = values(runs, recommended, largest, student)
        out.append(
            Claim(
                title,
                p.decide(0.95),
                f"{recommended} asymmetric {fmt(asym)} = {100 * p.mean:.1f}% ± "
                f"{100 * p.spread:.1f}% of the teacher's {teacher_map:.4f} ({p.note()}; "
                f"symmetric {fmt(sym)} = {100 * sym.mean() / teacher_map:.1f}%)",
            )
        )
    else:
        out.append(Claim(title, "not measured", f"{recommended} learns no projection to the teacher's space"))

    for lever, title in (
        (
            "nopool",
            f"(g) Learning from the unqueried pool helps: `{recommended}` (label-free pretraining on the "
            f"whole pool) beats `{recommended}-nopool` (the same, from scratch) at the lever budgets",
        ),
        (
            "random",
            f"(h) Choosing what to ask helps: `{recommended}` on the selected subset beats "
            f"`{recommended}-random` (a random subset of the same size) at the lever budgets",
        ),
    ):
        if lever in levers_off:
            out.append(Claim(title, "not measured", levers_off[lever]))
        else:
            out.append(_beats(runs, student, recommended, f"{recommended}-{lever}", lever_budgets, title))
    return out


def levers_not_measured(params, skipped: list[str]) -> dict[str, str]:
    """The levers whose claims cannot be measured in this configuration, each with why (the claims
    say so instead of a verdict): ``skipped`` holds the reasons cells were not trained."""
    rec, off = params.recommended, {}
    if params.sample.strategy == "random":
        off["random"] = "sample.strategy is random: the subsets are random already (the lever is off)"
    elif skipped:
        off["random"] = f"its random subsets' answers come from the ceiling's, which were not asked for ({skipped[0]})"
    if params.method[rec].pool == "none":
        off["nopool"] = f"method.{rec}.pool is none: it does not use the pool (the lever is off)"
    return off


def _combine(verdicts: list[str]) -> str:
    if not verdicts or all(v == "not measured" for v in verdicts):
        return "not measured"
    if all(v == "holds" for v in verdicts):
        return "holds"
    if "does not hold" in verdicts:
        return "does not hold"
    return "within noise" if "within noise" in verdicts else "partly measured"


def to_markdown(items: list[Claim], seeds: int) -> str:
    rule = RULE + (
        f". This run has {seeds} seeds"
        if seeds >= MIN_SEEDS
        else f". **This run has {seeds} seed{'s' if seeds > 1 else ''}: fewer than {MIN_SEEDS}, so no verdict "
        "below is beyond noise** (`seeds: [0, 1, 2]` in params.yaml)"
    )
    lines = [
        "# The paper's claims, decided by this run",
        "",
        f"Generated by the report stage from this run's metrics. Noise rule: {rule}. mAP is the revisited "
        "protocol's Medium mAP.",
        "",
    ]
    for c in items:
        lines += [f"- **{c.title}: {c.verdict}.**", f"  {c.evidence}", ""]
    return "\n".join(lines)
