"""Averaging the seeds: one row per setting.

The runs of one setting that differ only in their seeds (``seed``, ``operator.seed``) are
averaged: each run's number is already a mean over its images; the summary gives the mean of
those over the seeds and its standard error, std / sqrt(number of seeds) with the n - 1 std,
and the per-image spread (the runs' per-image std, averaged). ``num_images`` is kept as a
setting: a different number of images is a different average, so runs with 4 and 16 images
are not pooled (it shows as a column only where it varies, as every setting does).

Runs that repeat a finished result id (a sweep and its re-run after a crash) count once; runs
of different code versions stay apart (``pool_versions`` averages them). Runs of one setting that
were evaluated on different test images (their ``image_fingerprint``s differ: the folder's images
or the manifest changed) are not averaged: the aggregation stops and says so, unless
``pool_images`` lets it.
"""
from __future__ import annotations

import math

import pandas as pd

from qcsbench.aggregation.runs import COSTS, QUALITY, SAMPLED, SEEDS
from qcsbench.errors import ConfigError

FIRST = ("method", "bits", "m", "noise_std")  # the order settings are shown in
BOOKKEEPING = ("result_id", "code_version", "image_fingerprint", "problem", "repeat_of")  # per-run columns that are not settings


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that say what was run (not the numbers, not the seeds), in display order."""
    numbers = {"run", "status", *BOOKKEEPING, *COSTS, *(f"{n}_{s}" for n in QUALITY + SAMPLED for s in ("mean", "std"))}
    keys = [c for c in frame.columns if c not in numbers and c not in SEEDS]
    return sorted(keys, key=lambda k: (FIRST.index(k) if k in FIRST else len(FIRST), k.count("."), k))


def varying(frame: pd.DataFrame, keys) -> list[str]:
    """The keys whose value differs between rows, less two kinds that say nothing new: a key
    whose values copy an earlier one's (``quantizer.bits`` follows ``bits``) and a method knob
    that each method holds at one value (its own default, not something the sweep varied)."""
    out, seen = [], []
    for key in keys:
        values = frame[key].astype(str)
        if values.nunique() < 2 or any(values.equals(s) for s in seen):
            continue
        if key.startswith("method.") and "method" in frame and (values.groupby(frame["method"]).nunique() < 2).all():
            continue
        out.append(key)
        seen.append(values)
    return out


def _se(values: pd.Series) -> float:
    values = values.dropna().astype(float)
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def _count_seeds(runs: pd.DataFrame) -> int:
    present = [s for s in SEEDS if s in runs.columns]
    return len(runs[present].drop_duplicates()) if present else min(len(runs), 1)


def mark_repeats(frame: pd.DataFrame) -> pd.DataFrame:
    """``repeat_of``: for a finished run whose result id and number of images an earlier finished
    run already has (the same images of the same settings by the same code, computed again or
    resumed: a sweep and its re-run), that earlier run; such a run is counted once."""
    first, repeats = {}, []
    for _, row in frame.iterrows():
        key = (row.get("result_id"), str(row.get("num_images")))
        repeat = None
        if row["status"] == "finished" and isinstance(key[0], str):
            repeat = first.setdefault(key, row["run"])
            repeat = None if repeat == row["run"] else repeat
        repeats.append(repeat)
    return frame.assign(repeat_of=repeats)


def with_versions(frame: pd.DataFrame) -> pd.DataFrame:
    """``code_version`` for every run: a failed run (no metrics) takes the sweep's one version
    where all its finished runs share one, so that it is counted with them."""
    version = frame["code_version"] if "code_version" in frame else pd.Series(None, index=frame.index, dtype=object)
    known = version.dropna().unique()
    return frame.assign(code_version=version.fillna(known[0]) if len(known) == 1 else version)


def check_same_images(runs: pd.DataFrame, where: str) -> None:
    """Stop with one sentence when the finished runs of one setting were evaluated on different
    test images (a run from before fingerprints were recorded has none and is not compared)."""
    found = runs["image_fingerprint"].dropna().unique() if "image_fingerprint" in runs else []
    if len(found) > 1:
        raise ConfigError(f"the runs of {where} were evaluated on different test images (image fingerprints "
                          f"{', '.join(sorted(found))}: the dataset's images or manifest differ), so their mean "
                          "would mix test sets: aggregate them separately, or pass --pool-images to average them.")


def average_seeds(frame: pd.DataFrame, pool_versions: bool = False, pool_images: bool = False) -> pd.DataFrame:
    """One row per setting: the settings that vary (the code version among them unless
    ``pool_versions``), then for each quality metric (and, where runs drew several samples per image,
    each of their numbers: runs.SAMPLED) its mean over the seeds, standard error over the seeds and
    per-image spread, the costs and the run counts. A run repeating a result id already counted is
    left out (``repeats``); runs of one setting on different test images stop the aggregation unless
    ``pool_images``."""
    frame = mark_repeats(with_versions(frame))
    keys = varying(frame, setting_columns(frame) + ([] if pool_versions else ["code_version"]))
    if "method" in frame.columns and "method" not in keys:
        keys = ["method", *keys]
    table = frame.assign(**{k: frame[k].astype(str) for k in keys})
    rows = []
    for values, runs in table.groupby(keys, sort=True, dropna=False) if keys else [((), table)]:
        done = runs[(runs.status == "finished") & runs.repeat_of.isna()]
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        if not pool_images:
            check_same_images(done, ", ".join(f"{k}={v}" for k, v in row.items()) or "this sweep")
        row.update(runs=len(runs), failed=int((runs.status != "finished").sum()),
                   repeats=int(runs.repeat_of.notna().sum()), seeds=_count_seeds(done),
                   images_diverged=int(pd.to_numeric(done.num_diverged, errors="coerce").fillna(0).sum()),
                   images=int(pd.to_numeric(done.get("num_images", pd.Series(dtype=float)), errors="coerce")
                              .fillna(0).sum()))
        for name in QUALITY + tuple(n for n in SAMPLED if f"{n}_mean" in frame):
            means = pd.to_numeric(done[f"{name}_mean"], errors="coerce")
            row[f"{name}_mean"] = float(means.mean()) if means.notna().any() else float("nan")
            row[f"{name}_se"] = _se(means)
            row[f"{name}_image_std"] = float(pd.to_numeric(done[f"{name}_std"], errors="coerce").mean())
        for name in ("nfe", "seconds_per_image"):
            row[name] = float(pd.to_numeric(done[name], errors="coerce").mean()) if len(done) else float("nan")
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary.attrs["settings"] = keys
    summary.attrs["notes"] = list(frame.attrs.get("notes", []))
    return summary
