"""Tables and plots from one or more sweep folders.

    python scripts/aggregate.py outputs/sweeps/2026-11-23/11-30-00 [more folders] [--out DIR]
    python scripts/aggregate.py --wandb ENTITY/PROJECT [--group GROUP] --out DIR

Writes runs.csv (every run), table.md (rows: method; columns: the swept settings; cells:
PSNR and SSIM mean ± std, NFE, seconds per image; failed and diverged runs marked) and
psnr_vs_m.png, psnr_vs_bits.png, bit_budget.png where the sweep has the points for them.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcsbench import aggregate  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", help="sweep folders (searched recursively for runs)")
    parser.add_argument("--out", help="where to write the table and plots (default: the first folder)")
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
    failed = sum(r["status"] != "finished" for r in result["runs"])
    print(f"{len(result['runs'])} runs ({failed} failed); wrote runs.csv, table.md"
          + "".join(f", {p.name}" for p in result["plots"]) + f" to {result['out']}")


if __name__ == "__main__":
    main()
