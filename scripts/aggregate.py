"""Tables and plots from one or more sweep folders, or from W&B.

    python scripts/aggregate.py outputs/sweeps/2026-11-23/11-30-00 [more folders] [--out DIR]
    python scripts/aggregate.py --wandb ENTITY/PROJECT [--group GROUP] --out DIR

Every run's settings come from its resolved config; runs that differ only in their seeds
are averaged (mean ± standard error over the seeds). Writes runs.csv (one row per run),
summary.csv (one row per setting), table.md and table.tex (PSNR and SSIM; rows: method;
columns: the settings that vary; best per column in bold; failed and diverged marked) and
PNG + PDF plots against M, bits and a fixed bit budget where the sweep has the points.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcsbench import aggregate  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", help="sweep folders (searched recursively for runs)")
    parser.add_argument("--out", help="where to write the tables and plots (default: the first folder)")
    parser.add_argument("--wandb", help="entity/project: read the runs from W&B instead (online)")
    parser.add_argument("--group", help="with --wandb: only this group (sweep)")
    args = parser.parse_args()
    if args.wandb:
        result = aggregate.write_outputs(aggregate.from_wandb(args.wandb, args.group), args.out or ".")
    elif args.folders:
        result = aggregate.aggregate(args.folders, args.out)
    else:
        parser.error("give sweep folders, or --wandb ENTITY/PROJECT")
    print(result["table"])
    runs = result["runs"]
    print(f"{len(runs)} runs ({int((runs.status != 'finished').sum())} failed); wrote runs.csv, summary.csv, "
          "table.md, table.tex" + "".join(f", {p.name}" for p in result["plots"]) + f" to {result['out']}")


if __name__ == "__main__":
    main()
