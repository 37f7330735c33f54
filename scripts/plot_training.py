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

from qcsbench.cli import ScriptArguments, fail, one_sentence  # noqa: E402
from qcsbench.errors import ConfigError  # noqa: E402
from qcsbench.files import atomic_write  # noqa: E402
from qcsbench.files import writable_folder  # noqa: E402


def read_history(where: str) -> dict[int, float]:
    """{step: held-out PSNR} of a run's history.json; a missing or damaged file is one sentence."""
    path = Path(where)
    path = path / "history.json" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"{where} holds no history.json: give a training run folder of scripts/train.py.")
    try:
        history = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path} cannot be read as JSON ({err}): give the history.json scripts/train.py wrote.") from None
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and type(h.get("step")) is int and type(h.get("eval_psnr")) in (int, float)
            for h in history):
        raise ConfigError(f"{path} is not a training history (a list of entries with an integer step and a number "
                          "eval_psnr): give the history.json scripts/train.py wrote.")
    if not history:
        raise ConfigError(f"{path} holds no evaluation yet: plot it after the first eval_every steps.")
    return {h["step"]: h["eval_psnr"] for h in history}


def main(argv=None):
    parser = ScriptArguments(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER")
    parser.add_argument("--out", default="training_curves.png", help="where the plot goes")
    args = parser.parse_args(argv)
    if Path(args.out).is_dir():
        fail(f"--out {args.out} is a folder: give the file the plot goes to, e.g. {Path(args.out) / 'curves.png'}.")
    writable_folder("--out", Path(args.out).expanduser().absolute().parent)  # its folder
    curves = {}
    for item in args.runs:
        label, sep, where = item.partition("=")
        if not (sep and label and where):
            fail(f"{item} is not LABEL=RUN_FOLDER: name each run, e.g. restoregrad=outputs/train/x.")
        if label in curves:
            fail(f"the label {label} is given twice: give each run its own label.")
        curves[label] = read_history(where)
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
    one_sentence(main)
