"""qcsbench from Python, without Hydra: build a problem, recover the images, evaluate.

    python examples/recover.py                     # 4 digits, 1 bit, M = 200, the full ladder
    python examples/recover.py --num-levels 20     # a shorter ladder, a few seconds
"""
import argparse

import torch

from qcsbench import metrics
from qcsbench.channels import UniformQuantizer
from qcsbench.data import embedded_mnist
from qcsbench.methods.annealed_langevin import AnnealedLangevin
from qcsbench.operators import gaussian
from qcsbench.priors.trained import trained_prior
from qcsbench.problem import Problem


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--m", type=int, default=200)
    parser.add_argument("--bits", type=int, default=1)
    parser.add_argument("--num-levels", type=int, default=None, help="geometric ladder length (default: the prior's)")
    args = parser.parse_args(argv)

    # the problem: MNIST test digits in [0, 1], A_ij ~ N(0, 1/M), y = Q(A x + n) with sigma = 0.05
    x = embedded_mnist("test").batch(range(args.num_images))
    operator = gaussian(x.shape[1:], args.m, seed=0)
    channel = UniformQuantizer(args.bits, noise_std=0.05)
    problem = Problem.measure(x, operator, channel, rng=0)  # a seed: the measurements run.py takes with seed=0

    # the prior (the score network shipped with qcsbench) and the method
    prior = trained_prior(shipped="ncsn_mnist")
    method = AnnealedLangevin(name="qcs_sgm", likelihood="diagonal", num_levels=args.num_levels, progress=False)
    recovery = method.recover(problem, prior, rng=torch.Generator().manual_seed(1))  # or a seed, or ImageRandom

    scores = metrics.evaluate(recovery.x_hat, x)
    print(f"measurements: {tuple(problem.measurement.y.shape)}")
    print(f"prior evaluations per image: {recovery.nfe}")
    for name in ("psnr", "ssim", "cosine"):
        unit = " (dB)" if name == "psnr" else ""
        values = " ".join(f"{v:.2f}" for v in scores[name].tolist())
        print(f"{name}{unit}: {float(scores[name].mean()):.2f} mean; per image {values}")


if __name__ == "__main__":
    main()
