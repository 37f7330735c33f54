"""Turn sweeps into the tables and plots that go in a paper.

``runs`` reads sweep folders (or W&B) into one row per run, ``averaging`` averages the seeds
into one row per setting, ``tables`` writes them as Markdown and LaTeX, ``plots`` draws them;
``aggregate`` does all of it (scripts/aggregate.py). Whatever a folder holds, the table is
still written: a run that cannot be read is a failed run that says why.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from qcsbench import files
from qcsbench.aggregation.averaging import average_seeds, mark_repeats, with_versions
from qcsbench.aggregation.plots import plots
from qcsbench.aggregation.published import beside
from qcsbench.aggregation.runs import find_runs, from_wandb
from qcsbench.aggregation.tables import Layout, failure_notes, latex, markdown, published_markdown, shown
from qcsbench.errors import ConfigError

__all__ = ["aggregate", "write_outputs", "find_runs", "from_wandb", "average_seeds", "markdown", "latex", "plots",
           "failure_notes", "Layout"]


def write_outputs(frame: pd.DataFrame, out, pool_versions: bool = False, pool_images: bool = False,
                  layout: Layout = Layout()) -> dict:
    """runs.csv (one row per run), summary.csv (one per setting, with the published numbers where a
    preset has them), table.md and table.tex (rows and columns as ``layout`` says) and the plots."""
    if frame.empty:
        raise ConfigError("no runs to aggregate.")
    out = Path(out)
    frame.attrs["notes"] = list(frame.attrs.get("notes", [])) + failure_notes(frame)
    summary = average_seeds(frame, pool_versions, pool_images)
    layout.check(summary)
    frame = mark_repeats(with_versions(frame))
    summary = beside(summary, frame)
    files.write_text(out / "runs.csv", frame.to_csv(index=False))
    files.write_text(out / "summary.csv", summary.to_csv(index=False))
    table = markdown(summary, shown(summary), layout) + published_markdown(summary)
    files.write_text(out / "table.md", table)
    files.write_text(out / "table.tex", latex(summary, shown(summary), layout))
    return dict(runs=frame, summary=summary, table=table, plots=plots(summary, out), out=out)


def aggregate(folders, out=None, pool_versions: bool = False, pool_images: bool = False,
              layout: Layout = Layout()) -> dict:
    frame = find_runs(folders)
    if frame.empty:
        raise ConfigError(f"no runs found under {', '.join(map(str, folders))} (looked for */.hydra/).")
    return write_outputs(frame, out or folders[0], pool_versions, pool_images, layout)
