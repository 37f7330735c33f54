"""Run several methods on the same experiment through run.py and print one Markdown table.

    python scripts/compare_methods.py --m 200 400 -- num_images=16       # every method in configs/method/
    python scripts/compare_methods.py --methods qcs_sgm diff_onebit --m 200 -- num_images=16
Every run shares prior, A (operator.seed) and y (seed), so only the method differs. Results go to
outputs/compare/<method>_m<M>/; a run whose metrics.json exists is read, not repeated (--force redoes it).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcsbench.setup import method_names  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", nargs="+", default=method_names(ROOT / "configs"))
    parser.add_argument("--m", nargs="+", type=int, default=[200, 400])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "compare"))
    parser.add_argument("--force", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra run.py overrides, after --")
    args = parser.parse_args()
    rows = []
    for m in args.m:
        for method in args.methods:
            run_dir = Path(args.out) / f"{method}_m{m}"
            if args.force or not (run_dir / "metrics.json").is_file():
                cmd = [sys.executable, str(ROOT / "run.py"), f"method={method}", f"m={m}", "logger=none",
                       "method.progress=false", f"hydra.run.dir={run_dir}", *args.overrides]
                print(" ".join(cmd[1:]), file=sys.stderr, flush=True)
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    continue
            rows.append(json.loads((run_dir / "metrics.json").read_text()))
    print("| method | M | PSNR | PSNR (scaled) | SSIM | NFE | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['m']} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} | {r['psnr_scaled_mean']:.2f} | "
              f"{r['ssim_mean']:.3f} | {r['nfe']} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
