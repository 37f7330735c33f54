"""Run several methods on the same experiment through run.py and print one Markdown table.

    python scripts/compare_methods.py --m 200 400 -- num_images=16       # every method in configs/method/
    python scripts/compare_methods.py --methods qcs_sgm diff_onebit --m 200 -- num_images=16
Every run shares prior, A (operator.seed) and y (seed), so only the method differs. Each run goes
to outputs/compare/<method>_m<M>_<digest of the overrides>/ and runs every time: run.py resumes
the images whose results are stored for exactly these settings (results_dir), so a repeated
table costs little and a changed override (bits=3) never reads another setting's numbers.
--force recomputes every image (resume=false). A run that fails stops the table with its error.
"""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcsbench.cli import ScriptArguments, fail, positive  # noqa: E402
from qcsbench.setup import method_names  # noqa: E402


def run_folder(out: Path, method: str, m: int, overrides: list[str]) -> Path:
    """The folder of one run: named by the method, M and a digest of the overrides in their order."""
    digest = hashlib.sha256(json.dumps(overrides).encode()).hexdigest()[:10]
    return out / f"{method}_m{m}_{digest}"


def run_one(method: str, m: int, args) -> dict:
    """metrics.json of ``python run.py`` for this method and M; its error line ends the script."""
    run_dir = run_folder(Path(args.out), method, m, args.overrides)
    cmd = [sys.executable, str(ROOT / "run.py"), f"method={method}", f"m={m}", "logger=none", "method.progress=false",
           f"hydra.run.dir={run_dir}", *(["resume=false"] if args.force else []), *args.overrides]
    (run_dir / "metrics.json").unlink(missing_ok=True)  # the table reads only what this run writes
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        said = next((line[len("error: "):] for line in lines if line.startswith("error: ")), None)
        if said:  # run.py's own sentence for a bad value
            fail(f"method={method} m={m}: {said}")
        fail(f"run.py method={method} m={m} failed ({lines[-1].strip()}): see {run_dir / 'run.log'}.")
    return json.loads((run_dir / "metrics.json").read_text())


def main(argv=None):
    parser = ScriptArguments(description=__doc__)
    parser.add_argument("--methods", nargs="+", default=method_names(ROOT / "configs"),
                        choices=method_names(ROOT / "configs"))
    parser.add_argument("--m", nargs="+", type=positive, default=[200, 400])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "compare"))
    parser.add_argument("--force", action="store_true", help="recompute every image (resume=false)")
    parser.add_argument("overrides", nargs="*", help="extra run.py overrides, after --")
    args = parser.parse_args(argv)
    rows = [run_one(method, m, args) for m in args.m for method in args.methods]
    print("| method | M | PSNR | PSNR (scaled) | SSIM | NFE | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['m']} | {number(r['psnr_mean'], 2)} ± {number(r['psnr_std'], 2)} | "
              f"{number(r['psnr_scaled_mean'], 2)} | {number(r['ssim_mean'], 3)} | {r['nfe']} | {r['seconds']:.1f} |")


def number(value, digits: int) -> str:
    """A mean of metrics.json; null where every image diverged."""
    return "diverged" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
