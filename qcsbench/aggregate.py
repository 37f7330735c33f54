"""Turn sweeps into the tables and plots that go in a paper.

Every run becomes one row of a tidy pandas frame: its settings come from the resolved
config the run saved (``config.yaml``, else ``.hydra/config.yaml``), never from folder
names or tags, and its numbers from ``metrics.json`` (no such file: the run failed).
Keys that only change how a run is shown or where it writes (the logger, batch size,
device, progress bars, paths, resume) are left out, so runs that differ only in those
are the same setting.

The runs of one setting that differ only in their seeds (``seed``, ``operator.seed``) are
then averaged: each run's number is already a mean over its images; the table gives the
mean of those over the seeds and its standard error, std / sqrt(number of seeds) with
the n - 1 std, and the per-image spread (the runs' per-image std, averaged).
``num_images`` is kept as a setting: a different number of images is a different
average, so runs with 4 and 16 images are not pooled (it shows as a column only where it
varies, as every setting does).

Sweep folders are data from elsewhere: a run folder reached twice (``SWEEP SWEEP``, a link)
is read once; runs that repeat a finished result id (a sweep and its re-run after a crash)
count once; runs of different code versions stay apart (``pool_versions`` averages them);
a run whose config or metrics cannot be read, or whose numbers are not numbers, is marked
failed with the reason, and the table is still written. Configs are read as plain YAML,
and only references to other keys and the resolvers that read nothing else (``${div:}``,
``${channel_label:}``, ``${oc.select:}``) are resolved: ``${oc.env:NAME}`` and every other
resolver stay text, so reading a foreign folder never reads the environment.
"""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf

from qcsbench import files, metrics
from qcsbench.errors import ConfigError

log = logging.getLogger(__name__)

DISPLAY_ONLY = {"batch_size", "device", "progress", "results_dir", "cache_dir", "resume", "run_dir", "optimized_metric"}
SEEDS = ("seed", "operator.seed")
QUALITY = tuple(metrics.NAMES)  # psnr, ssim, nmse, cosine, psnr_scaled
LOWER_IS_BETTER = {"nmse"}
COSTS = ("nfe", "seconds_per_image", "num_diverged", "num_resumed", "seconds")
LABELS = dict(psnr="PSNR (dB)", ssim="SSIM", nmse="NMSE", cosine="cosine similarity",
              psnr_scaled="PSNR after the best scalar fit (dB)")
DIGITS = dict(psnr=2, ssim=3, nmse=3, cosine=3, psnr_scaled=2)
FIRST = ("method", "bits", "m", "noise_std")  # the order settings are shown in
BOOKKEEPING = ("result_id", "code_version", "problem", "repeat_of")  # per-run columns that are not settings
# Pure functions of their arguments or of the config itself: resolved when reading a config.
SAFE_RESOLVERS = {"div", "channel_label", "oc.select"}
RESOLVER_CALL = re.compile(r"\$\{\s*([^\s:}${]+)\s*:")


# ---------------------------------------------------------------- one row per run

def flatten(tree, prefix="") -> dict:
    """{"method": {"step_lr": 1e-4}} -> {"method.step_lr": 1e-4}; lists become their text."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value) if isinstance(value, (list, tuple)) else value
    return out


def settings_of(config: dict) -> dict:
    """The flattened config less the display-only keys; ``group._target_`` becomes ``group``
    (the group's ``name`` where it has one, else the target's last dotted part)."""
    flat = {k: v for k, v in flatten(config).items()
            if not k.startswith("logger") and k.rsplit(".", 1)[-1] not in DISPLAY_ONLY}
    for key in [k for k in flat if k.endswith("._target_")]:
        group = key[: -len("._target_")]
        target = flat.pop(key)
        flat[group] = flat.pop(f"{group}.name", None) or str(target).rsplit(".", 1)[-1]
    for key in [k for k in flat if k.count(".") == 1 and k.endswith(".name")]:  # a reported component
        flat[key[: -len(".name")]] = flat.pop(key)
    return {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] not in ("_recursive_", "_partial_")}


def as_run(config: dict, components: dict | None) -> dict:
    """The config with each component group replaced by what the built component reported
    (metrics.json's ``components``, W&B's ``described``): a knob the component does not use
    (bits for the logistic link, say) then shows as absent, not as the config's value."""
    if not components:
        return config
    out = dict(config)
    for group, described in components.items():
        out[group] = dict(described)
    channel, operator = components.get("quantizer", {}), components.get("operator", {})
    out.update(bits=channel.get("bits"), noise_std=channel.get("noise_std", config.get("noise_std")),
               m=operator.get("m", config.get("m")))
    return out


def checked_numbers(numbers) -> tuple[dict | None, str | None]:
    """(numbers, None), or (None, why) when a run's numbers cannot be used: not an object, a
    quality or cost that is neither null nor a finite number, components that are not objects."""
    if numbers is None:
        return None, None
    if not isinstance(numbers, dict):
        return None, f"its metrics are {type(numbers).__name__}, not an object"
    for name in [*(f"{n}_{s}" for n in QUALITY for s in ("mean", "std")), *COSTS]:
        value = numbers.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            return None, f"its {name} is {value!r}, not a number"
        if value is not None and value < 0 and not name.endswith("_mean"):
            return None, f"its {name} is {value!r}, which cannot be negative"
    for name in ("result_id", "code_version"):
        if not isinstance(numbers.get(name), (str, type(None))):
            return None, f"its {name} is {numbers[name]!r}, not text"
    components = numbers.get("components")
    if components is not None and not (isinstance(components, dict)
                                       and all(isinstance(v, dict) for v in components.values())):
        return None, "its components are not objects of settings"
    return numbers, None


def run_row(config: dict, numbers: dict | None, where: str, problem: str | None = None) -> dict:
    """One run: its settings, ``status`` (finished / failed), its numbers (None when failed), its
    result id and code version, and ``problem``: why a run that left files is failed."""
    numbers, bad = checked_numbers(numbers)
    problem = problem or bad
    if problem:
        numbers = None
    row = settings_of(as_run(config, (numbers or {}).get("components")))
    row["run"] = where
    row["status"] = "finished" if numbers is not None else "failed"
    numbers = numbers or {}
    for name in QUALITY:
        row[f"{name}_mean"] = numbers.get(f"{name}_mean")
        row[f"{name}_std"] = numbers.get(f"{name}_std")
    for name in COSTS:
        row[name] = numbers.get(name)
    row.update(result_id=numbers.get("result_id"), code_version=numbers.get("code_version"), problem=problem)
    return row


def _read_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"it holds {type(data).__name__}, not a mapping")
    return data


def _inert(value):
    """A config value with every interpolation that calls a resolver outside SAFE_RESOLVERS escaped
    (it stays text); plain references (${bits}) and our own resolvers still resolve."""
    if isinstance(value, dict):
        return {k: _inert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inert(v) for v in value]
    if isinstance(value, str) and "${" in value and set(RESOLVER_CALL.findall(value)) - SAFE_RESOLVERS:
        return value.replace("${", "\\${")
    return value


def load_config(job: Path) -> dict:
    """The run's resolved config (config.yaml, plain YAML), else Hydra's copy with only safe
    interpolations resolved (docstring at the top). Raises ValueError saying why neither can be read."""
    reasons = []
    for path in (job / "config.yaml", job / ".hydra" / "config.yaml"):
        if not path.is_file():
            continue
        try:
            data = _read_yaml(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as err:
            reasons.append(f"{path.relative_to(job)} cannot be read ({first_line(err)})")
            continue
        if path.name == "config.yaml" and path.parent == job:
            return data
        from qcsbench import resolvers

        resolvers.register()
        try:
            return OmegaConf.to_container(OmegaConf.create(_inert(data)), resolve=True)
        except Exception:  # an interpolation that cannot be resolved here: the settings as written
            return data
    raise ValueError("; ".join(reasons) or "it has no config.yaml")


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:120]


def read_run(job: Path) -> dict:
    """One run folder as a row; what cannot be read makes it a failed run that says why."""
    try:
        config, problem = load_config(job), None
    except ValueError as err:
        config, problem = {}, str(err)
    numbers = None
    if (job / "metrics.json").is_file():
        try:
            numbers = json.loads((job / "metrics.json").read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            problem = problem or f"metrics.json cannot be read ({first_line(err)})"
    return run_row(config, numbers, str(job), problem)


def find_runs(folders) -> pd.DataFrame:
    """Every Hydra job under ``folders`` (a folder holding ``.hydra/``), one row each; a job
    reached twice (the same folder given twice, a link) is read once (``attrs["notes"]`` says so)."""
    rows, seen, repeated = [], set(), 0
    for folder in folders:
        if not Path(folder).is_dir():
            raise ConfigError(f"{folder} is not a folder: give the sweep folders that hold the runs.")
        for hydra_dir in sorted(Path(folder).rglob(".hydra")):
            job = hydra_dir.parent.resolve()
            if job in seen:
                repeated += 1
                continue
            seen.add(job)
            rows.append(read_run(job))
    frame = pd.DataFrame(rows)
    frame.attrs["notes"] = [f"{repeated} run folders were reached twice and read once"] if repeated else []
    return frame


def from_wandb(path: str, group: str | None = None, api=None) -> pd.DataFrame:
    """The same frame from W&B: each run's logged config and summary. ``path`` is entity/project;
    ``api`` defaults to ``wandb.Api()``."""
    if api is None:
        import wandb

        api = wandb.Api()
    rows = []
    for run in api.runs(path, filters={"group": group} if group else {}):
        summary = dict(run.summary)
        finished = run.state == "finished" and summary.get("nfe") is not None  # the runner logs nfe last-but-always
        config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}  # W&B's own _wandb entry
        config = as_run(config, config.pop("described", None))
        config.pop("result_id", None)
        rows.append(run_row(config, summary if finished else None, run.url))
    frame = pd.DataFrame(rows)
    frame.attrs["notes"] = []
    return frame


# ---------------------------------------------------------------- averaging the seeds

def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that say what was run (not the numbers, not the seeds), in display order."""
    numbers = {"run", "status", *BOOKKEEPING, *COSTS, *(f"{n}_{s}" for n in QUALITY for s in ("mean", "std"))}
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


def average_seeds(frame: pd.DataFrame, pool_versions: bool = False) -> pd.DataFrame:
    """One row per setting: the settings that vary (the code version among them unless
    ``pool_versions``), then for each quality metric its mean over the seeds, standard error over
    the seeds and per-image spread, the costs and the run counts. A run repeating a result id
    already counted is left out (``repeats``)."""
    frame = mark_repeats(with_versions(frame))
    keys = varying(frame, setting_columns(frame) + ([] if pool_versions else ["code_version"]))
    if "method" in frame.columns and "method" not in keys:
        keys = ["method", *keys]
    table = frame.assign(**{k: frame[k].astype(str) for k in keys})
    rows = []
    for values, runs in table.groupby(keys, sort=True, dropna=False) if keys else [((), table)]:
        done = runs[(runs.status == "finished") & runs.repeat_of.isna()]
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        row.update(runs=len(runs), failed=int((runs.status != "finished").sum()),
                   repeats=int(runs.repeat_of.notna().sum()), seeds=_count_seeds(done),
                   images_diverged=int(pd.to_numeric(done.num_diverged, errors="coerce").fillna(0).sum()),
                   images=int(pd.to_numeric(done.get("num_images", pd.Series(dtype=float)), errors="coerce")
                              .fillna(0).sum()))
        for name in QUALITY:
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


# ---------------------------------------------------------------- tables

def _state(row) -> str:
    """ok, failed (no run finished) or diverged (every image of every finished run diverged)."""
    if row["failed"] == row["runs"]:
        return "failed"
    return "diverged" if math.isnan(row["psnr_mean"]) else "ok"


def _grid(summary: pd.DataFrame, name: str):
    """(row labels, column labels, {(row, col): summary row}) with methods as rows and the other
    varying settings as columns."""
    keys = summary.attrs["settings"]
    col_keys = [k for k in keys if k != "method"]
    label = (lambda r: ", ".join(f"{k}={r[k]}" for k in col_keys)) if col_keys else (lambda r: "all")
    cells = {(str(r.get("method", "")), label(r)): r for _, r in summary.iterrows()}
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
    state = _state(row)
    if state != "ok":
        return f"**{state}**" if style == "md" else rf"\textbf{{{state}}}"
    d = DIGITS[name]
    mean, se = row[f"{name}_mean"], row[f"{name}_se"]
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
        if row["images_diverged"] and _state(row) == "ok":
            notes.append(f"† {where}: {row['images_diverged']} of {row['images']} images diverged "
                         "(left out of the mean)")
        if row["failed"] and _state(row) == "ok":
            notes.append(f"‡ {where}: {row['failed']} of {row['runs']} runs failed")
        if row.get("repeats"):
            notes.append(f"{where}: {row['repeats']} runs repeat a result id already counted (the same images, "
                         "settings and code, e.g. a re-run after a crash) and are counted once")
    if "code_version" in summary.attrs["settings"]:
        notes.append("runs of different code versions are kept apart (code_version); pool_versions averages them")
    return notes + summary.attrs.get("notes", [])


def markdown(summary: pd.DataFrame, names=("psnr", "ssim")) -> str:
    out = []
    for name in names:
        rows, cols, cells = _grid(summary, name)
        out += [f"### {LABELS[name]}", "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
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


def latex(summary: pd.DataFrame, names=("psnr", "ssim")) -> str:
    """One booktabs tabular per metric (``\\usepackage{booktabs}``)."""
    out = []
    for name in names:
        rows, cols, cells = _grid(summary, name)
        best = {c: _best(cells, rows, c, name) for c in cols}
        out += [f"% {LABELS[name]}: " + "; ".join(_notes(summary)).replace("±", "+-"),
                r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule",
                " & ".join(["method", *map(_tex_escape, cols)]) + r" \\", r"\midrule"]
        for r in rows:
            out.append(" & ".join([_tex_escape(r), *(_cell(cells[(r, c)], name, best[c] == r, "tex")
                                                     if (r, c) in cells else "" for c in cols)]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- plots

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
        ok = [r for r in rows if _state(r) == "ok"]
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
            if _state(r) != "ok":
                ax.plot(float(r[x]), 0.03, "x", color=color, ms=10, mew=2, transform=ax.get_xaxis_transform())
                ax.annotate(_state(r), (float(r[x]), 0.03), xycoords=ax.get_xaxis_transform(),
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


# ---------------------------------------------------------------- all of it

def failure_notes(frame: pd.DataFrame, shown: int = 5) -> list[str]:
    """One note per run that left files but could not be used, at most ``shown`` of them."""
    bad = frame[frame["problem"].notna()] if "problem" in frame else frame.iloc[:0]
    notes = [f"failed: {row.run}: {row.problem}" for row in bad.head(shown).itertuples()]
    if len(bad) > shown:
        notes.append(f"and {len(bad) - shown} more failed runs (runs.csv, column problem)")
    return notes


def write_outputs(frame: pd.DataFrame, out, pool_versions: bool = False) -> dict:
    """runs.csv (one row per run), summary.csv (one per setting), table.md, table.tex and the plots."""
    if frame.empty:
        raise ConfigError("no runs to aggregate.")
    out = Path(out)
    frame.attrs["notes"] = list(frame.attrs.get("notes", [])) + failure_notes(frame)
    summary = average_seeds(frame, pool_versions)
    frame = mark_repeats(with_versions(frame))
    files.write_text(out / "runs.csv", frame.to_csv(index=False))
    files.write_text(out / "summary.csv", summary.to_csv(index=False))
    table = markdown(summary)
    files.write_text(out / "table.md", table)
    files.write_text(out / "table.tex", latex(summary))
    return dict(runs=frame, summary=summary, table=table, plots=plots(summary, out), out=out)


def aggregate(folders, out=None, pool_versions: bool = False) -> dict:
    frame = find_runs(folders)
    if frame.empty:
        raise ConfigError(f"no runs found under {', '.join(map(str, folders))} (looked for */.hydra/).")
    return write_outputs(frame, out or folders[0], pool_versions)
