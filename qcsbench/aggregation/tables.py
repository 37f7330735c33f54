"""The summary as tables (Markdown, LaTeX): by default methods as rows and the other varying
settings as columns; ``Layout`` names other row and column settings (an ablation's)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from qcsbench.errors import ConfigError

LOWER_IS_BETTER = {"nmse", "lpips"}
LABELS = dict(psnr="PSNR (dB)", ssim="SSIM", nmse="NMSE", cosine="cosine similarity",
              psnr_scaled="PSNR after the best scalar fit (dB)", lpips="LPIPS", psnr_single="PSNR of one sample (dB)",
              coverage="90 % interval coverage")
DIGITS = dict(psnr=2, ssim=3, nmse=3, cosine=3, psnr_scaled=2, lpips=3, psnr_single=2, coverage=3)


def shown(summary: pd.DataFrame) -> tuple[str, ...]:
    """The metrics the tables show: PSNR and SSIM (of the samples' mean, where runs drew several
    samples per image), and then also one sample's PSNR and the 90 % coverage."""
    return ("psnr", "ssim") + (("psnr_single", "coverage") if "psnr_single_mean" in summary else ())


def state_of(row) -> str:
    """ok, failed (no run finished) or diverged (every image of every finished run diverged)."""
    if row["failed"] == row["runs"]:
        return "failed"
    return "diverged" if math.isnan(row["psnr_mean"]) else "ok"


@dataclass(frozen=True)
class Layout:
    """The settings that label a table's rows, and those that label its columns (None: every
    other setting that varies). A varying setting named in neither joins the columns, unless the
    named ones already fix it (a method's own step size, say, with the method a row key)."""

    rows: tuple = ("method",)
    columns: tuple | None = None

    def check(self, summary: pd.DataFrame) -> None:
        """One sentence for a named setting the runs do not have."""
        for where, keys in (("rows", self.rows), ("columns", self.columns or ())):
            for key in keys:
                if key not in summary:
                    known = ", ".join(sorted(k for k in summary.attrs["settings"]))
                    raise ConfigError(f"--{where} {key} is not a setting of these runs: use one of {known}.")

    def keys(self, summary: pd.DataFrame) -> tuple[list[str], list[str]]:
        """(row keys, column keys) for this summary."""
        rows = [k for k in self.rows if k in summary]
        varying = [k for k in summary.attrs["settings"] if k not in rows]
        if self.columns is None:
            return rows, varying
        named = rows + [k for k in self.columns if k not in rows]
        return rows, named[len(rows):] + [k for k in varying if k not in named and not _fixed(summary, named, k)]


def _fixed(summary: pd.DataFrame, named: list[str], key: str) -> bool:
    """Whether the values of ``named`` fix ``key`` (one value of it per combination of theirs)."""
    text = summary[[*named, key]].astype(str)
    return bool((text.groupby(named)[key].nunique() <= 1).all())


def _grid(summary: pd.DataFrame, name: str, layout: Layout):
    """(row labels, column labels, {(row, col): summary row})."""
    row_keys, col_keys = layout.keys(summary)
    row_label = lambda r: ", ".join(str(r.get(k, "")) for k in row_keys)  # noqa: E731
    label = (lambda r: ", ".join(f"{k}={r[k]}" for k in col_keys)) if col_keys else (lambda r: "all")
    cells = {(row_label(r), label(r)): r for _, r in summary.iterrows()}
    rows = list(dict.fromkeys(k[0] for k in cells))
    cols = list(dict.fromkeys(label(r) for _, r in summary.iterrows()))
    return rows, cols, cells


def _best(cells, rows, col, name):
    """The row with the best value in this column; none where the column has a single row."""
    values = {r: cells[(r, col)][f"{name}_mean"] for r in rows if (r, col) in cells}
    if len(values) < 2:
        return None
    values = {r: v for r, v in values.items() if not math.isnan(v)}
    if not values:
        return None
    pick = min if name in LOWER_IS_BETTER else max
    return pick(values, key=values.get)


def _cell(row, name, bold, style) -> str:
    state = state_of(row)
    if state != "ok":
        return f"**{state}**" if style == "md" else rf"\textbf{{{state}}}"
    d = DIGITS[name]
    mean, se = row[f"{name}_mean"], row[f"{name}_se"]
    if math.isnan(mean):  # a number only some runs have (one sample's PSNR beside runs of one sample)
        return "—"
    pm = " ± " if style == "md" else r" \pm "
    text = f"{mean:.{d}f}" + (f"{pm}{se:.{d}f}" if not math.isnan(se) else "")
    if style == "md":
        text = f"**{text}**" if bold else text
    else:
        text = f"$\\mathbf{{{text}}}$" if bold else f"${text}$"
    marks = ("†" if row["images_diverged"] else "") + ("‡" if row["failed"] else "")
    if style == "tex":
        marks = marks.replace("†", r"$^\dagger$").replace("‡", r"$^\ddagger$")
    return text + marks


def _notes(summary: pd.DataFrame) -> list[str]:
    seeds = sorted(set(summary.seeds))
    notes = [f"mean ± standard error over {'/'.join(map(str, seeds))} seed(s) (no ± with one seed); "
             "each seed's number is a mean over its images; best per column in bold"]
    for _, row in summary.iterrows():
        where = ", ".join(f"{k}={row[k]}" for k in summary.attrs["settings"]) or "all runs"
        if row["images_diverged"] and state_of(row) == "ok":
            notes.append(f"† {where}: {row['images_diverged']} of {row['images']} images diverged "
                         "(left out of the mean)")
        if row["failed"] and state_of(row) == "ok":
            notes.append(f"‡ {where}: {row['failed']} of {row['runs']} runs failed")
        if row.get("repeats"):
            notes.append(f"{where}: {row['repeats']} runs repeat a result id already counted (the same images, "
                         "settings and code, e.g. a re-run after a crash) and are counted once")
    if "code_version" in summary.attrs["settings"]:
        notes.append("runs of different code versions are kept apart (code_version); pool_versions averages them")
    return notes + summary.attrs.get("notes", [])


def markdown(summary: pd.DataFrame, names=("psnr", "ssim"), layout: Layout = Layout()) -> str:
    out = []
    for name in names:
        rows, cols, cells = _grid(summary, name, layout)
        head = ", ".join(layout.keys(summary)[0]) or "method"
        out += [f"### {LABELS[name]}", "", f"| {head} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        best = {c: _best(cells, rows, c, name) for c in cols}
        for r in rows:
            out.append(f"| {r} | " + " | ".join(_cell(cells[(r, c)], name, best[c] == r, "md")
                                              if (r, c) in cells else "" for c in cols) + " |")
        out.append("")
    return "\n".join(out + [f"- {n}" for n in _notes(summary)]) + "\n"


def _tex_escape(text: str) -> str:
    for char in "\\&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text


def latex(summary: pd.DataFrame, names=("psnr", "ssim"), layout: Layout = Layout()) -> str:
    """One booktabs tabular per metric (``\\usepackage{booktabs}``)."""
    out = []
    for name in names:
        rows, cols, cells = _grid(summary, name, layout)
        best = {c: _best(cells, rows, c, name) for c in cols}
        out += [f"% {LABELS[name]}: " + "; ".join(_notes(summary)).replace("±", "+-"),
                r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule",
                " & ".join([_tex_escape(", ".join(layout.keys(summary)[0]) or "method"), *map(_tex_escape, cols)])
                + r" \\", r"\midrule"]
        for r in rows:
            out.append(" & ".join([_tex_escape(r), *(_cell(cells[(r, c)], name, best[c] == r, "tex")
                                                     if (r, c) in cells else "" for c in cols)]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def failure_notes(frame: pd.DataFrame, shown: int = 5) -> list[str]:
    """One note per run that left files but could not be used, at most ``shown`` of them."""
    bad = frame[frame["problem"].notna()] if "problem" in frame else frame.iloc[:0]
    notes = [f"failed: {row.run}: {row.problem}" for row in bad.head(shown).itertuples()]
    if len(bad) > shown:
        notes.append(f"and {len(bad) - shown} more failed runs (runs.csv, column problem)")
    return notes


def published_markdown(summary: pd.DataFrame) -> str:
    """Our means beside the published numbers, one line per setting that matches a published row
    (qcsbench.aggregation.published); empty where none does."""
    if "published_source" not in summary or not summary.published_source.notna().any():
        return ""
    names = [n for n in ("psnr", "ssim", "lpips") if summary[f"published_{n}"].notna().any()]
    head = [f"{LABELS.get(n, n.upper())} {what}" for n in names for what in ("ours", "published", "difference")]
    out = ["### Published beside ours", "", "| setting | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for _, row in summary[summary.published_source.notna()].iterrows():
        cells = []
        for n in names:
            d = DIGITS.get(n, 3)
            cells += ["" if pd.isna(row[c]) else f"{row[c]:+.{d}f}" if c.startswith("difference") else f"{row[c]:.{d}f}"
                      for c in (f"{n}_mean", f"published_{n}", f"difference_{n}")]
        where = ", ".join(f"{k}={row[k]}" for k in summary.attrs["settings"]) or "all runs"
        out.append(f"| {where} | " + " | ".join(cells) + " |")
    sources = "; ".join(dict.fromkeys(summary.published_source.dropna()))
    return "\n".join(["", *out, "", f"- published: {sources}; difference: ours minus published", ""])
