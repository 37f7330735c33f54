"""The summary as plots: against M, against bits, and against bits at a fixed bit budget (PNG and PDF)."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from qcsbench import files
from qcsbench.aggregation.runs import first_line
from qcsbench.aggregation.tables import LABELS, state_of

log = logging.getLogger(__name__)


def _number(value) -> float:
    """A setting's value as a float; NaN where it is not a number (a damaged or foreign config)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _series(summary, x, keys):
    """{label: rows sorted by x} for the plot of ``x``; series differ in every other varying key.
    Rows whose ``x`` is not a number are left out of the plot (the table still shows them)."""
    by = [k for k in keys if k != x]
    out = {}
    for _, row in summary.iterrows():
        if math.isnan(_number(row[x])):
            continue
        label = ", ".join(str(row[k]) if k == "method" else f"{k}={row[k]}" for k in by) or "all"
        out.setdefault(label, []).append(row)
    return {k: sorted(v, key=lambda r: float(r[x])) for k, v in sorted(out.items())}


def plot(summary: pd.DataFrame, x: str, name: str, path: Path, keys=None, xlabel=None, title=None) -> list[Path]:
    """``name`` against ``x``, one line per series, error bars = standard error over seeds (over
    images where a setting has one seed). Drawn only where a series has two or more x values.
    A failed or fully diverged setting is an x at the foot of the axes, labelled; a setting with
    some diverged images is circled. Writes PNG and PDF; returns their paths."""
    keys = summary.attrs["settings"] if keys is None else keys
    if x not in summary:
        return []
    series = _series(summary, x, keys)
    if not any(len({float(r[x]) for r in rows}) > 1 for rows in series.values()):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    one_seed = False
    for label, rows in series.items():
        ok = [r for r in rows if state_of(r) == "ok"]
        xs = [float(r[x]) for r in ok]
        ys = [r[f"{name}_mean"] for r in ok]
        err = []
        for r in ok:
            if math.isnan(r[f"{name}_se"]):
                one_seed = True
                err.append(r[f"{name}_image_std"] / math.sqrt(max(r["images"], 1)))
            else:
                err.append(r[f"{name}_se"])
        line = ax.errorbar(xs, ys, yerr=np.nan_to_num(err), marker="o", capsize=3, label=label)
        color = line.lines[0].get_color()
        for r in ok:
            if r["images_diverged"]:
                ax.plot(float(r[x]), r[f"{name}_mean"], "o", ms=14, mfc="none", mec="red")
                ax.annotate(f"{r['images_diverged']}/{r['images']} diverged", (float(r[x]), r[f"{name}_mean"]),
                            textcoords="offset points", xytext=(6, 8), fontsize=7, color="red")
        for r in rows:
            if state_of(r) != "ok":
                ax.plot(float(r[x]), 0.03, "x", color=color, ms=10, mew=2, transform=ax.get_xaxis_transform())
                ax.annotate(state_of(r), (float(r[x]), 0.03), xycoords=ax.get_xaxis_transform(),
                            textcoords="offset points", xytext=(0, 9), ha="center", fontsize=7, color=color)
    if x == "m":
        ax.set_xscale("log")
    if x == "bits":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    bars = "s.e. over images (one seed)" if one_seed else "s.e. over seeds"
    title = (title or f"{LABELS[name]} against {x}") + f"\n(bars: {bars})"
    ax.set(xlabel=xlabel or x, ylabel=LABELS[name], title=title)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = []
    for fmt in ("png", "pdf"):
        target = path.with_suffix(f".{fmt}")
        paths.append(files.atomic_write(target, lambda tmp: fig.savefig(tmp, format=fmt, dpi=130)))
    plt.close(fig)
    return paths


def plots(summary: pd.DataFrame, out: Path, names=("psnr", "ssim")) -> list[Path]:
    """Against M, against bits, and against bits at a fixed bit budget Q x M, where the grid has the points."""
    out = Path(out)
    keys = summary.attrs["settings"]
    made = []

    def draw(frame, x, name, path, **kwargs):
        try:
            made.extend(plot(frame, x, name, path, **kwargs))
        except (ValueError, OverflowError) as err:  # values no axis can show (a damaged config's 1e308 bits)
            import matplotlib.pyplot as plt

            plt.close("all")
            log.warning("%s was not drawn: %s", path.name, first_line(err))

    for name in names:
        draw(summary, "m", name, out / f"{name}_vs_m", xlabel="measurements M")
        draw(summary, "bits", name, out / f"{name}_vs_bits", xlabel="bits Q")
    if {"bits", "m"} <= set(keys):
        product = pd.to_numeric(summary.bits, errors="coerce") * pd.to_numeric(summary.m, errors="coerce")
        budget = summary.assign(bit_budget=[int(v) if math.isfinite(v) else v for v in product])
        budget.attrs["settings"] = keys
        series_keys = [k for k in keys if k != "m"] + ["bit_budget"]
        draw(budget, "bits", "psnr", out / "bit_budget", keys=series_keys, xlabel="bits Q (Q x M fixed)",
             title="PSNR at a fixed bit budget Q x M")
    return made
