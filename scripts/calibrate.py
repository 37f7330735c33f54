"""How close is each method to the exact posterior? One Markdown table per method.

    python scripts/calibrate.py                                  # every method, the default problems
    python scripts/calibrate.py --methods qcs_sgm dps --replicates 8 --samples 400 --exact 4000
    python scripts/calibrate.py --methods qcs_sgm -- method.steps_per_level=10   # method overrides after --

Small problems with a random Gaussian-mixture prior (qcsbench/calibration.py), whose posterior is
sampled exactly by Gibbs sampling (qcsbench/exact_posterior.py). Every method is built from its
configs/method/<name>.yaml by Hydra, as run.py builds it; what changes is the prior (its short
ladder is the one the methods use by default) and, for biht and oneshot, pixel_rms (the image
scale they assume), set to the prior's.
"""
import argparse
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcsbench import calibration, resolvers  # noqa: E402
from qcsbench.setup import instantiate, method_names  # noqa: E402

METHODS = method_names(ROOT / "configs")
POINT_ESTIMATES = {"oneshot", "biht"}


def settings(args):
    out = []
    for size in args.problems:
        n, m = (int(v) for v in size.split("x"))
        for bits in args.bits:
            for operator in args.operators:
                if operator == "ill_conditioned" and m > n:
                    continue  # that operator needs M <= N
                out.append(calibration.Setting(n, m, bits, operator, kappa=args.kappa, noise_std=args.noise_std))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--problems", nargs="+", default=["2x2", "8x4", "64x32"], help="N x M sizes")
    parser.add_argument("--bits", nargs="+", type=int, default=[1, 2], help="0 is the unquantized channel")
    parser.add_argument("--operators", nargs="+", default=list(calibration.OPERATORS), choices=calibration.OPERATORS)
    parser.add_argument("--kappa", type=float, default=1000.0, help="cond(A A^T) of the ill-conditioned A")
    parser.add_argument("--noise-std", type=float, default=0.05)
    parser.add_argument("--replicates", type=int, default=2, help="priors, A and truths per problem size")
    parser.add_argument("--samples", type=int, default=200, help="runs of each method per replicate")
    parser.add_argument("--exact", type=int, default=2000, help="exact posterior draws per replicate")
    parser.add_argument("--sweeps", type=int, default=100,
                        help="Gibbs sweeps per exact draw (30 mix every default problem)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every method (method.KEY=VALUE), after --")
    args = parser.parse_args()

    tic = time.perf_counter()
    instances = [calibration.make_instance(s, r, args.seed) for s in settings(args) for r in range(args.replicates)]
    exact, drifts = zip(*(calibration.exact_samples(inst, args.exact, args.sweeps, args.seed) for inst in instances))
    print(f"### exact posterior ({args.exact} Gibbs chains x {args.sweeps} sweeps per problem, "
          f"{time.perf_counter() - tic:.0f} s)\n")
    print(calibration.exact_table(instances, exact, drifts) + "\n")
    print(f"Mean error / spread of a perfect sampler with {args.samples} draws: about "
          f"{(1 / args.samples + 1 / args.exact) ** 0.5:.3f}; the exact sampler's own z² and coverage are in "
          f"parentheses.\n")
    resolvers.register()
    overall = []  # every method's rows, labelled by method, for the closing summary
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name in args.methods:
            cfg = compose("config", overrides=[f"method={name}", "method.progress=false", *args.overrides]).method
            tic = time.perf_counter()
            rows = []
            for inst, draws in zip(instances, exact):
                scale = dict(pixel_rms=calibration.pixel_rms(inst.prior)) if "pixel_rms" in cfg else {}
                rows += calibration.evaluate(instantiate(cfg, **scale), [inst], [draws], args.samples, args.seed)
            kind = "point estimate, against the MMSE" if name in POINT_ESTIMATES else f"{args.samples} samples"
            print(f"### {name} ({kind}; {time.perf_counter() - tic:.0f} s)\n")
            print(calibration.markdown_table(rows) + "\n", flush=True)
            overall += [dict(row, setting=name) for row in rows]
    print("### summary (every problem)\n")
    print(calibration.markdown_table(overall, first_column="method", total=False))


if __name__ == "__main__":
    main()
