"""How close is each method to the exact posterior? One Markdown table per method.

    python scripts/calibrate.py                                  # every method, the default problems
    python scripts/calibrate.py --methods qcs_sgm dps --replicates 8 --samples 400 --exact 4000
    python scripts/calibrate.py --methods qcs_sgm -- method.steps_per_level=10   # method overrides after --

Small problems with a random Gaussian-mixture prior (qcsbench/calibration.py), whose posterior is
sampled exactly by Gibbs sampling (qcsbench/exact_posterior.py). Every method is built from its
configs/method/<name>.yaml by Hydra, as run.py builds it; what changes is the prior (its short
ladder is the one the methods use by default) and, for biht, oneshot and sim_dmis, pixel_rms (the image
scale they assume), set to the prior's. The learned methods (idm, restoregrad) carry networks
trained for 28 x 28 MNIST images and cannot run on these problems. Every argument and method
override is checked before the first Gibbs sweep; a bad one is one line `error: ...`, exit status 2.
"""
import argparse
import math
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcsbench import calibration, resolvers  # noqa: E402
from qcsbench.cli import ScriptArguments, check_readable, composition_error, fail, one_sentence, positive  # noqa: E402
from qcsbench.errors import ConfigError  # noqa: E402
from qcsbench.methods.base import LearnedMethod  # noqa: E402
from qcsbench.setup import instantiate, method_names, method_target  # noqa: E402
from qcsbench.validate import check_group  # noqa: E402

CONFIGS = ROOT / "configs"
METHODS = method_names(CONFIGS)
LEARNED = [name for name in METHODS if issubclass(get_class(method_target(CONFIGS, name)), LearnedMethod)]
POINT_ESTIMATES = {"oneshot", "biht", "sim_dmis", "red_diff"}  # red_diff returns the mean mu of its q(x), not a draw


def size(text: str) -> tuple[int, int]:
    """An argparse type: N x M, both positive integers."""
    n, sep, m = text.partition("x")
    if not (sep and n.isdigit() and m.isdigit() and int(n) > 0 and int(m) > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a size NxM with positive integers, e.g. 8x4")
    return int(n), int(m)


WORDS = {int: "an integer", float: "a finite number"}


def in_range(kind, lo, hi=math.inf, lo_open=False):
    """An argparse type: a finite number of ``kind`` in [lo, hi] (or (lo, hi])."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not {WORDS[kind]}") from None
        if not (math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi):
            bounds = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi < math.inf else "")
            raise argparse.ArgumentTypeError(f"{text} is not allowed (use {WORDS[kind]} {bounds})")
        return value
    return parse


def arguments(argv=None):
    parser = ScriptArguments(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=[m for m in METHODS if m not in LEARNED], choices=METHODS)
    parser.add_argument("--problems", nargs="+", type=size, default=[(2, 2), (8, 4), (64, 32)], help="N x M sizes")
    parser.add_argument("--bits", nargs="+", type=in_range(int, 0, 16), default=[1, 2],
                        help="0 is the unquantized channel")
    parser.add_argument("--operators", nargs="+", default=list(calibration.OPERATORS), choices=calibration.OPERATORS)
    parser.add_argument("--kappa", type=in_range(float, 1), default=1000.0, help="cond(A A^T) of the ill-conditioned A")
    parser.add_argument("--noise-std", type=in_range(float, 0, lo_open=True), default=0.05)
    parser.add_argument("--replicates", type=positive, default=2, help="priors, A and truths per problem size")
    parser.add_argument("--samples", type=in_range(int, 2), default=200, help="runs of each method per replicate")
    parser.add_argument("--exact", type=in_range(int, 2), default=2000, help="exact posterior draws per replicate")
    parser.add_argument("--sweeps", type=in_range(int, 2), default=100,
                        help="Gibbs sweeps per exact draw (30 mix every default problem; the drift column "
                             "compares the second half with the first)")
    parser.add_argument("--seed", type=in_range(int, 0), default=0)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every method (method.KEY=VALUE), after --")
    args = parser.parse_args(argv)
    learned = [name for name in args.methods if name in LEARNED]
    if learned:
        fail(f"--methods {' '.join(learned)}: learned methods carry a network trained for 28 x 28 MNIST images and "
             f"cannot run on the calibration problems (N-pixel vectors): leave them out.")
    return args


def settings(args):
    out = []
    for n, m in args.problems:
        for bits in args.bits:
            for operator in args.operators:
                if operator == "ill_conditioned" and m > n:
                    continue  # that operator needs M <= N
                out.append(calibration.Setting(n, m, bits, operator, kappa=args.kappa, noise_std=args.noise_std))
    if not out:
        raise ConfigError("--problems holds no N x M with M <= N, which --operators ill_conditioned needs: "
                          "add a problem with M <= N or --operators gaussian.")
    return out


def method_configs(names, overrides) -> dict:
    """Each method's config, composed as run.py composes it and checked as run.py checks it."""
    check_readable(overrides)
    for line in overrides:
        if not line.lstrip("+~").startswith("method."):
            raise ConfigError(f"{line} is not a method override: after -- give method.KEY=VALUE only.")
    out = {}
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        def composed(lines):
            return compose("config", overrides=lines, return_hydra_config=True)
        for name in names:
            lines = [f"method={name}", "method.progress=false", *overrides]
            try:
                cfg = composed(lines).method
            except Exception as err:  # Hydra raises several types; each becomes one sentence
                raise ConfigError(composition_error(err, lines, composed)) from None
            node = OmegaConf.to_container(cfg, resolve=True)
            check_group("method", node)
            instantiate(cfg, **({"pixel_rms": 0.3} if "pixel_rms" in cfg else {}))  # its own checks, now
            out[name] = cfg
    return out


def main(argv=None):
    args = arguments(argv)
    resolvers.register()
    configs = method_configs(args.methods, args.overrides)
    tic = time.perf_counter()
    instances = [calibration.make_instance(s, r, args.seed) for s in settings(args) for r in range(args.replicates)]
    exact, drifts = zip(*(calibration.exact_samples(inst, args.exact, args.sweeps, args.seed) for inst in instances))
    print(f"### exact posterior ({args.exact} Gibbs chains x {args.sweeps} sweeps per problem, "
          f"{time.perf_counter() - tic:.0f} s)\n")
    print(calibration.exact_table(instances, exact, drifts) + "\n")
    print(f"Mean error / spread of a perfect sampler with {args.samples} draws: about "
          f"{(1 / args.samples + 1 / args.exact) ** 0.5:.3f}; the exact sampler's own z² and coverage are in "
          f"parentheses.\n")
    overall = []  # every method's rows, labelled by method, for the closing summary
    for name, cfg in configs.items():
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
    one_sentence(main)
