"""Published numbers beside ours: each paper preset's table, matched to the settings a sweep ran.

A preset's published numbers live beside the configs, in ``configs/published/<preset>.yaml``:
a ``source`` and ``rows``, each row a ``method``, the settings that pick the table's cell
(``n_over_m: 16``, ``bits: 2``, ...) and the paper's ``psnr``, ``ssim`` and ``lpips`` (null where
the paper gives none). A setting of the summary matches a row when it was run with that preset
(``experiment``, from each run's Hydra record), the same method and every setting the row names.
The summary then gets ``published_<metric>``, ``difference_<metric>`` (ours minus published) and
``published_source``; a setting no row matches gets none.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from qcsbench import shipped
from qcsbench.aggregation.averaging import setting_columns

METRICS = ("psnr", "ssim", "lpips")
FOLDER = shipped("published")


def table(experiment, folder: Path = FOLDER) -> list[dict]:
    """The published rows of a preset (none where it has no file), each with its source."""
    path = Path(folder) / f"{experiment}.yaml"
    if not isinstance(experiment, str) or not path.is_file():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    return [dict({"source": data.get("source")}, **row) for row in data.get("rows", [])]


def same(ours, theirs) -> bool:
    """A setting's value as a sweep holds it (text after averaging) against a published row's."""
    try:
        return float(ours) == float(theirs)
    except (TypeError, ValueError):
        return str(ours) == str(theirs)


def match(settings: dict, rows: list[dict]) -> dict | None:
    for row in rows:
        wanted = {k: v for k, v in row.items() if k not in (*METRICS, "source")}
        if all(k in settings and same(settings[k], v) for k, v in wanted.items()):
            return row
    return None


def beside(summary: pd.DataFrame, runs: pd.DataFrame, folder: Path = FOLDER) -> pd.DataFrame:
    """The summary with the published numbers of each setting that matches a published row."""
    keys = [k for k in summary.attrs.get("settings", []) if k in runs]
    shown = runs[keys].astype(str)
    found = []
    for _, row in summary.iterrows():
        members = runs[(shown == pd.Series({k: row[k] for k in keys}, dtype=object)).all(axis=1)]
        members = members[members.status == "finished"] if (members.status == "finished").any() else members
        settings = members[setting_columns(runs)].iloc[0].to_dict() if len(members) else {}
        found.append(match(settings, table(settings.get("experiment"), folder)))
    if not any(found):
        return summary
    out = summary.copy()
    for name in METRICS:
        published = pd.to_numeric(pd.Series([(f or {}).get(name) for f in found], index=out.index, dtype=object),
                                  errors="coerce")
        out[f"published_{name}"] = published
        out[f"difference_{name}"] = out[f"{name}_mean"] - published
    out["published_source"] = [(f or {}).get("source") for f in found]
    out.attrs = dict(summary.attrs)
    return out
