"""The pictures a user would rather look at than read: mAP against budget, training curves, the
size-quality frontier and retrieval galleries (a model's top results for fixed queries, right and
wrong marked). Each returns a matplotlib figure; ``save_png`` writes one atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.io import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(picture, path: Path) -> None:
    """A matplotlib figure or a Pillow image, as a PNG file."""
    buf = io.BytesIO()
    if hasattr(picture, "savefig"):
        picture.savefig(buf, format="png")
        _plt().close(picture)
    else:
        picture.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _label_points(axis, values) -> None:
    """Ticks at the plotted values, as plain numbers: a log axis over a decade or less would otherwise
    print overlapping minor labels (3x10^0 4x10^0) or none at the points a reader looks for."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = sorted({float(v) for v in values})
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())
    axis.set_ticks(ticks, [f"{t:,.0f}" if t >= 100 else f"{t:.3g}" for t in ticks], fontsize=8)


def map_vs_budget(df: "pd.DataFrame", teacher_map: float):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, rows in df.groupby("method", sort=False):
        ax.errorbar(rows["budget"], rows["map_mean"], yerr=rows["map_std"], marker="o", capsize=3, label=method)
    ax.axhline(teacher_map, color="k", ls="--", label="teacher")
    ax.set_xscale("log")
    _label_points(ax.xaxis, df["budget"])
    ax.set_xlabel("teacher queries (budget B)")
    ax.set_ylabel("mAP (medium protocol)")
    ax.set_title("Student mAP vs teacher query budget, per method")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def training_curve(curve, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    steps, losses = zip(*curve) if curve else ((), ())
    ax.plot(steps, losses)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def training_curves(curves: dict[tuple[str, int], list]):
    """One panel per budget, one line per method (the first seed's curve)."""
    plt = _plt()
    budgets = sorted({b for _, b in curves})
    fig, axes = plt.subplots(1, len(budgets), figsize=(3.4 * len(budgets), 3.2), dpi=110, squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        for (method, b), curve in curves.items():
            if b == budget and curve:
                steps, losses = zip(*curve)
                ax.plot(steps, np.asarray(losses) / max(losses[0], 1e-12), label=method)
        ax.set_title(f"B = {budget}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss / its first value")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Training curves", fontsize=10)
    fig.tight_layout()
    return fig


def _tile(image, size: int) -> "Image.Image":
    """A square RGB thumbnail of a uint8 array or a PIL photo."""
    from PIL import Image, ImageOps

    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    im = ImageOps.contain(im.convert("RGB"), (size, size), Image.BILINEAR)  # small images grow, photos shrink
    tile = Image.new("RGB", (size, size), (0, 0, 0))
    tile.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return tile


def gallery(queries: list, results: list[list], correct: list[list[bool]], title: str, size: int = 72):
    """Rows: a query (blue frame), then its top results with a green (right) or red (wrong) frame.
    Drawn with Pillow, not matplotlib: a gallery per model costs milliseconds."""
    from PIL import Image, ImageDraw

    k, pad, frame, top = max(len(r) for r in results), 6, 4, 34
    cell = size + 2 * frame
    canvas = Image.new("RGB", (pad + (k + 1) * (cell + pad), top + len(queries) * (cell + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 6), title, fill="black")
    for col, label in enumerate(["query"] + [str(i + 1) for i in range(k)]):
        draw.text((pad + col * (cell + pad) + cell // 2 - 3 * len(label), 20), label, fill="black")
    colours = {None: (31, 78, 156), True: (26, 158, 58), False: (214, 39, 40)}
    for row, (q, res, ok) in enumerate(zip(queries, results, correct)):
        y = top + row * (cell + pad)
        for col, (image, mark) in enumerate([(q, None)] + list(zip(res, ok))):
            x = pad + col * (cell + pad)
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colours[mark])
            canvas.paste(_tile(image, size), (x + frame, y + frame))
    return canvas


def gallery_rows(ranks: np.ndarray, gnd: list[dict], queries: list[int], k: int = 10) -> dict:
    """The fixed queries' top ``k`` database indices (junk left out, as the protocol does) and whether
    each is a positive (Medium protocol: easy or hard)."""
    out = {"queries": [], "top": [], "correct": []}
    for q in queries:
        g = gnd[q]
        junk = set(np.asarray(g["junk"]).ravel().tolist())
        ok = set(np.asarray(g["easy"]).ravel().tolist()) | set(np.asarray(g["hard"]).ravel().tolist())
        top = [int(i) for i in ranks[q] if int(i) not in junk][:k]
        out["queries"].append(int(q))
        out["top"].append(top)
        out["correct"].append([i in ok for i in top])
    return out


def gallery_queries(n_queries: int, count: int = 6) -> list[int]:
    """Fixed, spread-out queries, the same for every model."""
    return sorted({int(round(x)) for x in np.linspace(0, n_queries - 1, min(count, n_queries))})


def frontier(df: "pd.DataFrame", teacher_map: float, teacher_flops: float | None, teacher_ips: float | None):
    """mAP against cost (FLOPs per image; measured descriptors per second), one curve per budget, the
    full-supervision student and the distillation ceiling of each size, and the teacher as points."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.3), dpi=110, layout="constrained")
    panels = (
        (axes[0], "mflops", "MFLOPs per image (log)", teacher_flops and teacher_flops / 1e6),
        (axes[1], "images_per_second", "descriptors per second (log)", teacher_ips),
    )
    for ax, x, label, teacher_x in panels:
        for budget, rows in df[~df["budget"].isin(["all", "pool"])].groupby("budget", sort=False):
            rows = rows.sort_values(x)
            ax.errorbar(rows[x], rows["map_mean"], yerr=rows["map_std"], marker="o", capsize=3, label=f"B={budget}")
        full = df[df["budget"] == "all"].sort_values(x)
        if len(full):
            ax.plot(full[x], full["map_mean"], "s--", color="gray", label="all labels, no teacher")
        ceiling = df[df["budget"] == "pool"].sort_values(x)
        if len(ceiling):
            ax.plot(
                ceiling[x], ceiling["map_mean"], "^:", color="tab:purple", label="every pool image answered (ceiling)"
            )
        if teacher_x:
            ax.plot([teacher_x], [teacher_map], "k*", markersize=14, label="teacher")
        else:
            ax.axhline(teacher_map, color="k", ls=":", label="teacher")
        ax.set_xscale("log")
        _label_points(ax.xaxis, list(df[x].dropna()) + ([teacher_x] if teacher_x else []))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("mAP (medium protocol)")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)  # beside the plots, never over a curve
    fig.suptitle("Size-quality frontier of the recommended method", fontsize=10)
    return fig
