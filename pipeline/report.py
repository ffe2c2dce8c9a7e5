"""The summary a user reads: student vs teacher mAP per budget, as a table and a plot."""
from __future__ import annotations

import io

import pandas as pd

from pipeline.io import atomic_write_bytes


def summary_table(student_metrics: dict[int, dict], teacher_metrics: dict, pool_size: int) -> pd.DataFrame:
    rows = []
    for budget in sorted(student_metrics):
        m = student_metrics[budget]
        rows.append({
            "budget": budget,
            "pool_percent": round(100 * budget / pool_size, 3),
            "teacher_queries": budget,
            "student_map": round(m["map"], 4),
            "teacher_map": round(teacher_metrics["map"], 4),
            "ratio": round(m["map"] / teacher_metrics["map"], 4),
            "student_mp@10": round(m.get("mp@10_medium", float("nan")), 4),
        })
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, train_queries: int, test_queries: int) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    lines += ["", f"Teacher queries for training (ledger): {train_queries}; "
              f"for evaluating the teacher, counted apart: {test_queries}."]
    return "\n".join(lines) + "\n"


def plot_map_vs_budget(df: pd.DataFrame, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(df["budget"], df["student_map"], "o-", label="student (derd)")
    ax.axhline(df["teacher_map"].iloc[0], color="k", ls="--", label="teacher")
    ax.set_xscale("log")
    ax.set_xlabel("teacher queries (budget B)")
    ax.set_ylabel("mAP (medium protocol)")
    ax.set_title("Student mAP vs teacher query budget")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
