"""Per-step time of the likelihood scores: QCS-SGM's diagonal one against QCS-SGM+'s EP.

    python scripts/benchmark_likelihood.py [--threads 2] [--repeats 20]

For each (M, N, B) it draws an ill-conditioned A (kappa = 1000), 1-bit measurements
(sigma = 0.1) of B random images, and times one call of each score at beta = 0.1: EP with
exactly 5 sweeps (tolerance 0, so it never stops early), and EP with its defaults (to its
tolerance; the sweeps it took in brackets). The eigendecomposition of A A^T
is computed before timing: it happens once per operator, not per step. For scale, the
time of one score evaluation of a 20-component Gaussian mixture prior of the same N
(MNIST sizes only).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from qcsbench.channels import UniformQuantizer
from qcsbench.cli import ScriptArguments, positive
from qcsbench.likelihood.ep import EPLikelihoodScore
from qcsbench.likelihood.diagonal import DiagonalLikelihoodScore
from qcsbench.operators import ill_conditioned
from qcsbench.priors.gmm import GaussianMixturePrior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, ImageRandom

SIZES = [(200, (1, 28, 28), 10), (400, (1, 28, 28), 10), (2000, (3, 32, 32), 8)]


def timed(fn, repeats):
    """Median wall time of fn() in milliseconds, after two warm-up calls."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return 1e3 * statistics.median(times)


def random_gmm(shape, components, g):
    n = math.prod(shape)
    eigvecs = torch.linalg.qr(torch.randn(components, n, n, generator=g))[0]
    return GaussianMixturePrior(torch.full((components,), 1.0 / components), torch.rand(components, n, generator=g),
                                torch.rand(components, n, generator=g), eigvecs, shape, [1.0])


def main():
    parser = ScriptArguments(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--repeats", type=positive, default=20)
    parser.add_argument("--no-prior", action="store_true", help="skip the Gaussian-mixture prior timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, beta = 0.1, 1 bit, kappa = 1000")
    header = (f"{'M':>5} {'N':>5} {'B':>3} | {'diagonal ms':>11} {'EP(5) ms':>9} {'EP/diag':>7} {'EP ms (sweeps)':>15} "
              f"| {'GMM prior ms':>12}")
    print(header)
    print("-" * len(header))
    for m, shape, batch in SIZES:
        op = ill_conditioned(shape, m, seed=0, kappa=1000.0)
        op.gram_eig()  # once per operator, outside the timed step
        channel = UniformQuantizer(1, noise_std=0.1)
        x = torch.rand(batch, *shape, generator=g)
        problem = Problem(op, channel, channel.measure(op.forward(x), ImageRandom(0, range(batch), MEASUREMENT)))
        xt = x + 0.1 * torch.randn(x.shape, generator=g)
        diag = DiagonalLikelihoodScore(problem)
        ep = EPLikelihoodScore(problem, max_iter=5, tolerance=0.0)
        t_diag = timed(lambda: diag(xt, 0.1), args.repeats)
        t_ep = timed(lambda: ep(xt, 0.1), args.repeats)
        assert ep.iterations == 5
        converged = EPLikelihoodScore(problem)
        t_converged = timed(lambda: converged(xt, 0.1), args.repeats)
        converged_col = f"{t_converged:.2f} ({converged.iterations})"
        prior_ms = "-"
        if not args.no_prior and op.n <= 1024:  # a 20-component mixture at N = 3072 is 750 MB of eigenvectors
            prior = random_gmm(shape, 20, g)
            prior_ms = f"{timed(lambda: prior.score(xt, 0.1), max(3, args.repeats // 4)):12.2f}"
        print(f"{m:5d} {op.n:5d} {batch:3d} | {t_diag:11.2f} {t_ep:9.2f} {t_ep / t_diag:7.2f} {converged_col:>15} "
              f"| {prior_ms:>12}")


if __name__ == "__main__":
    main()
