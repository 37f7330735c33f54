"""SIM-DMIS: the VE probability-flow ODE against its closed form for a Gaussian prior, the
inversion's round trip, the back-projection's single-index scaling, and whole runs."""
import math

import pytest
import torch

from conftest import TINY
from qcsbench.back_projection import matched_back_projection
from qcsbench.channels import GaussianNoise, LogisticChannel, UniformQuantizer
from qcsbench.methods.sim_dmis import SIMDMIS, inversion_ladder
from qcsbench.operators import DenseOperator
from qcsbench.priors import GaussianMixturePrior
from qcsbench.priors.base import geometric_sigmas
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, ImageRandom
from qcsbench.runner import run
from qcsbench.samplers.ode import ode_path

SHAPE = (1, 2, 3)


def gaussian_prior(seed=0):
    """One component, N(mu, C) with a random full covariance: its ODE has a closed form."""
    g = torch.Generator().manual_seed(seed)
    d = math.prod(SHAPE)
    root = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    mu = torch.rand(1, d, generator=g, dtype=torch.float64)
    return GaussianMixturePrior.from_covariances([1.0], mu, (root @ root.T)[None] + 0.01 * torch.eye(d)[None],
                                                 SHAPE, geometric_sigmas(10.0, 0.01, 20))


def exact_flow(prior, x, sigma_from, sigma_to):
    """The ODE's solution: in C's eigenbasis each coordinate of x - mu scales by
    sqrt((lambda + sigma_to^2) / (lambda + sigma_from^2)) (sigma_from, sigma_to of shape (B,))."""
    lam, u = prior.eigvals[0], prior.eigvecs[0]
    p = (x.reshape(len(x), -1) - prior.means[0]) @ u
    gain = ((lam + sigma_to[:, None] ** 2) / (lam + sigma_from[:, None] ** 2)).sqrt()
    return ((p * gain) @ u.T + prior.means[0]).view_as(x)


@pytest.mark.fast
def test_inversion_follows_the_exact_ode_of_a_gaussian_prior_and_returns_to_its_start():
    prior = gaussian_prior()
    start = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)  # one level per image, as SIM-DMIS starts
    x = prior.means[0].view(1, *SHAPE) + start.view(-1, 1, 1, 1) * torch.randn(3, *SHAPE, dtype=torch.float64)
    exact = exact_flow(prior, x, start, torch.full((3,), 8.0, dtype=torch.float64))
    error = {(order, steps): float((ode_path(prior, x, inversion_ladder(start, 8.0, steps), order) - exact).abs().max())
             for order in (1, 2) for steps in (50, 100)}
    # DDIM is first order in the step (half the step, half the error), the two-step method second order
    assert error[1, 50] / error[1, 100] == pytest.approx(2, rel=0.05)
    assert error[2, 50] / error[2, 100] == pytest.approx(4, rel=0.05)
    assert error[2, 100] < 1e-4 * float(exact.abs().max())
    # the round trip: up, then down the same levels, returns the start
    up = inversion_ladder(start, 8.0, 100)
    back = ode_path(prior, ode_path(prior, x, up, 2), up[::-1], 2)
    assert torch.allclose(back, x, rtol=0, atol=1e-4)


@pytest.mark.fast
def test_a_last_level_of_zero_gives_the_denoiser_estimate():
    prior = gaussian_prior()
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    assert torch.equal(ode_path(prior, x, [0.3, 0.0]), prior.denoise(x, 0.3))


@pytest.mark.fast
def test_back_projection_of_signs_has_the_single_index_scale():
    """For Gaussian A (entries N(0, 1/m)) and noiseless signs, E[A^T y] = sqrt(m) mu x / ||x|| with
    mu = E|g| = sqrt(2 / pi): the matched back-projection rescaled to ||x|| has c = ||x|| / (mu sqrt(m)),
    and its residual's per-pixel rms is the sigma* it reports."""
    g = torch.Generator().manual_seed(0)
    n, m = 144, 10000
    x = torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64)
    a = torch.randn(m, n, generator=g, dtype=torch.float64) / math.sqrt(m)
    op = DenseOperator(a, (1, 12, 12))
    y = torch.sign(op.forward(x))
    # the independent Monte Carlo estimate of the constant first
    assert float((y * (op.forward(x) * math.sqrt(m) / x.norm())).mean()) == pytest.approx(math.sqrt(2 / math.pi), rel=0.02)
    problem = Problem(op, UniformQuantizer(1, noise_std=0.0), None)
    rms = float(x.norm()) / math.sqrt(n)
    scaled, sigma = matched_back_projection(problem, y, rms)
    c = float(scaled.norm() / op.adjoint(y).norm())
    assert c == pytest.approx(float(x.norm()) / (math.sqrt(2 / math.pi) * math.sqrt(m)), rel=0.03)
    assert float((scaled - x).pow(2).mean().sqrt()) == pytest.approx(float(sigma[0]), rel=0.1)


def small_problem(channel, seed=0):
    g = torch.Generator().manual_seed(seed)
    op = DenseOperator(torch.randn(20, 6, generator=g, dtype=torch.float64) / 20**0.5, SHAPE)
    x = torch.rand(3, *SHAPE, generator=g, dtype=torch.float64)
    return Problem(op, channel, channel.measure(op.forward(x), ImageRandom(seed, range(3), MEASUREMENT)))


@pytest.mark.fast
@pytest.mark.parametrize("channel", [UniformQuantizer(1, noise_std=0.05), UniformQuantizer(3, noise_std=0.05),
                                     LogisticChannel(temperature=0.1), GaussianNoise(noise_std=0.05)])
def test_every_channel_gives_a_finite_point_estimate_with_its_nfe(channel):
    problem, prior = small_problem(channel), gaussian_prior()
    method = SIMDMIS(inversion_steps=4, num_levels=6, progress=False)
    first, second = method.recover(problem, prior, 0), method.recover(problem, prior, 1)
    assert first.nfe == 10 and torch.isfinite(first.x_hat).all()
    assert torch.equal(first.x_hat, second.x_hat)  # deterministic given y: the random stream is never read


@pytest.mark.in_process
def test_sim_dmis_runs_in_process(make_cfg, tmp_path):
    summary = run(make_cfg(*TINY, "method=sim_dmis", "method.inversion_steps=5", "method.num_levels=20",
                           f"+run_dir={tmp_path / 'run'}"))
    assert summary["nfe"] == 25 and summary["num_diverged"] == 0 and summary["psnr_mean"] > 10, summary
