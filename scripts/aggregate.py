"""Tables and plots from one or more sweep folders, or from W&B.

    python scripts/aggregate.py outputs/sweeps/2026-11-23/11-30-00 [more folders] [--out DIR] [--pool-versions]
                                [--pool-images]
    python scripts/aggregate.py --wandb ENTITY/PROJECT [--group GROUP] --out DIR
    python scripts/aggregate.py SWEEP --rows method,method.likelihood --columns experiment,prior

Every run's settings come from its resolved config; runs that differ only in their seeds
are averaged (mean ± standard error over the seeds). Writes runs.csv (one row per run),
summary.csv (one row per setting), table.md and table.tex (PSNR and SSIM; rows: method, or the
settings --rows names; columns: the other settings that vary, or those --columns names plus any
other that varies within them; best per column in bold; failed and diverged marked) and
PNG + PDF plots against M, bits and a fixed bit budget where the sweep has the points.

A run folder reached twice is read once, a run repeating a result id already counted is
counted once, runs of different code versions stay apart (--pool-versions averages them),
and a run that cannot be read is a failed run in the table, with the reason in runs.csv.
Runs of one setting evaluated on different test images (image fingerprints) stop the
aggregation with one sentence (--pool-images averages them). Where a run's preset has
published numbers (configs/published/), summary.csv and table.md set them beside ours.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcsbench import aggregation  # noqa: E402
from qcsbench.errors import ConfigError  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", help="sweep folders (searched recursively for runs)")
    parser.add_argument("--out", help="where to write the tables and plots (default: the first folder)")
    parser.add_argument("--wandb", help="entity/project: read the runs from W&B instead (online)")
    parser.add_argument("--group", help="with --wandb: only this group (sweep)")
    parser.add_argument("--pool-versions", action="store_true",
                        help="average runs of different code versions together (kept apart by default)")
    parser.add_argument("--pool-images", action="store_true",
                        help="average runs of one setting evaluated on different test images (refused by default)")
    parser.add_argument("--rows", default="method", help="comma-separated settings that label the rows (default: method)")
    parser.add_argument("--columns", default=None,
                        help="comma-separated settings that label the columns (default: every other that varies)")
    args = parser.parse_args()
    layout = aggregation.Layout(tuple(args.rows.split(",")), None if args.columns is None else tuple(args.columns.split(",")))
    if not (args.wandb or args.folders):
        parser.error("give sweep folders, or --wandb ENTITY/PROJECT")
    try:
        if args.wandb:
            frame = aggregation.from_wandb(args.wandb, args.group)
            result = aggregation.write_outputs(frame, args.out or ".", args.pool_versions, args.pool_images, layout)
        else:
            result = aggregation.aggregate(args.folders, args.out, args.pool_versions, args.pool_images, layout)
    except (ConfigError, OSError) as err:
        print(f"error: {err if isinstance(err, ConfigError) else f'{err.filename}: {err.strerror}'}", file=sys.stderr)
        sys.exit(2)
    print(result["table"])
    runs = result["runs"]
    for note in aggregation.failure_notes(runs, shown=len(runs)):
        print(note, file=sys.stderr)
    print(f"{len(runs)} runs ({int((runs.status != 'finished').sum())} failed); wrote runs.csv, summary.csv, "
          "table.md, table.tex" + "".join(f", {p.name}" for p in result["plots"]) + f" to {result['out']}")


if __name__ == "__main__":
    main()
