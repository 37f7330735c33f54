"""Held-out PSNR against training steps, from the history.json of training runs (scripts/train.py):

    python scripts/plot_training.py restoregrad=outputs/train/a identity=outputs/train/b --out curves.png

Each argument is LABEL=RUN_FOLDER (or the history.json itself). Writes the plot and prints the
same numbers as a Markdown table (one row per evaluated step).
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcsbench.files import atomic_write  # noqa: E402


def read_history(where: str) -> list[dict]:
    path = Path(where)
    path = path / "history.json" if path.is_dir() else path
    if not path.is_file():
        sys.exit(f"error: {where} holds no history.json: give a training run folder of scripts/train.py.")
    return json.loads(path.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER")
    parser.add_argument("--out", default="training_curves.png", help="where the plot goes")
    args = parser.parse_args()
    curves = {}
    for item in args.runs:
        if "=" not in item:
            sys.exit(f"error: {item} is not LABEL=RUN_FOLDER: name each run, e.g. restoregrad=outputs/train/x.")
        label, where = item.split("=", 1)
        curves[label] = {h["step"]: h["eval_psnr"] for h in read_history(where)}
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        ax.plot(list(points), list(points.values()), marker="o", label=label)
    ax.set_xlabel("training steps")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(args.out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    steps = sorted({s for points in curves.values() for s in points})
    print("| step | " + " | ".join(curves) + " |\n|" + "---|" * (len(curves) + 1))
    for s in steps:
        cells = [f"{curves[c][s]:.2f}" if s in curves[c] else "" for c in curves]
        print(f"| {s} | " + " | ".join(cells) + " |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
