"""Turn sweep folders into the tables and plots that go in a paper.

Every job folder (one holding .hydra/overrides.yaml) is one run: finished when its
metrics.json exists, failed otherwise. The settings that vary across the runs found
become the table's columns; methods are its rows.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import yaml

from qcsbench import tracking

FIELDS = ["psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "psnr_scaled_mean", "cosine_mean", "nfe",
          "seconds_per_image", "num_images", "num_diverged"]


def parse_overrides(lines) -> dict:
    out = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def find_runs(folders) -> list[dict]:
    runs = []
    for folder in folders:
        for marker in sorted(Path(folder).rglob(".hydra/overrides.yaml")):
            job = marker.parent.parent
            overrides = parse_overrides(yaml.safe_load(marker.read_text()) or [])
            config = yaml.safe_load((job / "config.yaml").read_text()) if (job / "config.yaml").is_file() else {}
            run = dict(run_dir=str(job), overrides=overrides,
                       method=(config.get("method") or {}).get("name") or overrides.get("method", "?"),
                       bits=config.get("bits", overrides.get("bits")), m=config.get("m", overrides.get("m")))
            metrics_path = job / "metrics.json"
            if metrics_path.is_file():
                run.update(status="finished", **{k: json.loads(metrics_path.read_text()).get(k) for k in FIELDS})
            else:
                run.update(status="failed", **{k: None for k in FIELDS})
            runs.append(run)
    return runs


def swept_keys(runs) -> list[str]:
    """Override keys whose value differs between runs, except the method (the table's rows)."""
    values = defaultdict(set)
    for run in runs:
        for key, value in run["overrides"].items():
            values[key].add(value)
    keys = {k for k, v in values.items() if len(v) > 1 or any(k not in r["overrides"] for r in runs)}
    return sorted(keys - {"method", "hydra/launcher"}, key=lambda k: (k not in ("bits", "m"), k))


def setting(run, keys) -> str:
    return ", ".join(f"{k}={run['overrides'].get(k, '(default)')}" for k in keys) or "(all)"


def fmt(mean, std, digits):
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def cell(run) -> str:
    if run["status"] != "finished":
        return "**failed**"
    text = (f"{fmt(run['psnr_mean'], run['psnr_std'], 2)} dB / {fmt(run['ssim_mean'], run['ssim_std'], 3)}"
            f"<br>NFE {run['nfe']}, "
            + (f"{run['seconds_per_image']:.2f} s/img" if run["seconds_per_image"] is not None else "resumed"))
    if run["num_diverged"]:
        text += f"<br>**{run['num_diverged']} of {run['num_images']} diverged**"
    return text


def markdown_table(runs) -> str:
    keys = swept_keys(runs)
    columns = sorted({setting(r, keys) for r in runs})
    methods = sorted({r["method"] for r in runs})
    by_cell = {(r["method"], setting(r, keys)): r for r in runs}
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method in methods:
        cells = [cell(by_cell[(method, c)]) if (method, c) in by_cell else "" for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nCells: PSNR (dB) / SSIM, mean ± std over images; NFE per image; seconds per image.\n"


def runs_csv(runs) -> str:
    keys = sorted({k for r in runs for k in r["overrides"]})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["run_dir", "status", "method", "bits", "m", *keys, *FIELDS])
    writer.writeheader()
    for r in runs:
        row = {k: r.get(k) for k in ("run_dir", "status", "method", "bits", "m", *FIELDS)}
        row.update({k: r["overrides"].get(k) for k in keys})
        writer.writerow(row)
    return buf.getvalue()


def _curves(runs, x_key, series_keys):
    """{series label: sorted [(x, psnr)]} over the finished runs."""
    curves = defaultdict(list)
    for r in runs:
        if r["status"] == "finished" and r["psnr_mean"] is not None and r.get(x_key) is not None:
            label = ", ".join(f"{k}={r[k]}" if k != "method" else str(r[k]) for k in series_keys)
            curves[label].append((float(r[x_key]), r["psnr_mean"]))
    return {k: sorted(v) for k, v in curves.items()}


def _plot(path: Path, curves, xlabel, title, logx=False) -> Path | None:
    if not any(len(points) > 1 for points in curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, points in sorted(curves.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="PSNR (dB)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tracking.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path


def plots(runs, out: Path) -> list[Path]:
    made = [
        _plot(out / "psnr_vs_m.png", _curves(runs, "m", ["method", "bits"]), "measurements M", "PSNR against M",
              logx=True),
        _plot(out / "psnr_vs_bits.png", _curves(runs, "bits", ["method", "m"]), "bits Q", "PSNR against bits"),
    ]
    budget = [dict(r, budget=int(r["bits"]) * int(r["m"])) for r in runs
              if r["bits"] is not None and r["m"] is not None]
    made.append(_plot(out / "bit_budget.png", _curves(budget, "bits", ["method", "budget"]), "bits Q (Q x M fixed)",
                      "Fixed bit budget Q x M"))
    return [p for p in made if p is not None]


def write_outputs(runs, out) -> dict:
    """runs.csv, table.md and the plots of ``runs`` in ``out``."""
    out = Path(out)
    tracking.write_text(out / "runs.csv", runs_csv(runs))
    table = markdown_table(runs)
    tracking.write_text(out / "table.md", table)
    return dict(runs=runs, table=table, plots=plots(runs, out), out=out)


def aggregate(folders, out=None) -> dict:
    runs = find_runs(folders)
    if not runs:
        raise SystemExit(f"no runs found under {', '.join(map(str, folders))} (looked for */.hydra/overrides.yaml)")
    return write_outputs(runs, out or folders[0])


def from_wandb(path: str, group: str | None = None) -> list[dict]:
    """The same records from W&B (online): ``path`` is entity/project."""
    import wandb

    filters = {"group": group} if group else {}
    runs = []
    for r in wandb.Api().runs(path, filters=filters):
        summary = dict(r.summary)
        runs.append(dict(run_dir=r.url, overrides={t.split("=", 1)[0]: t.split("=", 1)[1] for t in r.tags if "=" in t},
                         method=summary.get("method", "?"), bits=summary.get("bits"), m=summary.get("m"),
                         status="finished" if r.state == "finished" else "failed",
                         **{k: summary.get(k) for k in FIELDS}))
    return runs
