"""DAPS (qcsbench/samplers/daps.py) against closed forms: its x0 estimate is the probability-flow ODE,
exact for a Gaussian prior; its Langevin step on x0 samples a Gaussian when the channel is linear;
and the method end to end, as run.py runs it."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY
from qcsbench.channels import GaussianNoise, Measurement
from qcsbench.methods.daps import DAPS
from qcsbench.operators import DenseOperator
from qcsbench.priors import GaussianMixturePrior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, ImageRandom, as_stream
from qcsbench.runner import run
from qcsbench.samplers.daps import edm_sigmas, ode_x0
from qcsbench.samplers.tied_langevin import tied_langevin, tied_step

F64 = torch.float64
N = 5


def gaussian_prior(g):
    """A one-component mixture: N(mu, C) with a random C, eigenvalues from 0.01 to 0.3."""
    q, _ = torch.linalg.qr(torch.randn(N, N, generator=g, dtype=F64))
    lam = torch.linspace(0.01, 0.3, N, dtype=F64)
    mu = torch.rand(N, generator=g, dtype=F64)
    prior = GaussianMixturePrior(torch.ones(1, dtype=F64), mu[None], lam[None], q[None], (1, 1, N),
                                 torch.tensor([10.0, 0.01], dtype=F64))
    return prior, mu, lam, q


def exact_flow(x, mu, lam, q, sigma, to):
    """The probability-flow ODE of N(mu, C) from sigma to ``to``: each eigen-coordinate of x - mu
    scales by sqrt((lam + to^2) / (lam + sigma^2))."""
    scale = ((lam + to**2) / (lam + sigma**2)).sqrt()
    return mu + ((x - mu) @ q * scale) @ q.T


@pytest.mark.fast
def test_edm_ladder_ends_and_spacing():
    s = edm_sigmas(50.0, 0.05, 200)
    assert s[0] == pytest.approx(50.0) and s[-1] == pytest.approx(0.05) and len(s) == 200
    assert all(a > b for a, b in zip(s, s[1:]))
    assert s[1] / s[0] > s[-1] / s[-2]  # steps shrink faster (relatively) at the top than at the bottom
    assert edm_sigmas(3.0, 0.1, 1) == [3.0]


@pytest.mark.fast
def test_ode_estimate_converges_to_the_exact_flow_of_a_gaussian_prior():
    """Euler on the ODE down to sigma_min, then the step to 0 (= D(x, sigma_min)): with many steps it
    is the exact flow to sigma_min followed by Tweedie's estimate there, with the error of a
    first-order method (halving with twice the steps); one step is Tweedie's estimate at sigma."""
    g = torch.Generator().manual_seed(0)
    prior, mu, lam, q = gaussian_prior(g)
    sigma, lo = 3.0, 0.01
    x = mu + sigma * torch.randn(4, N, generator=g, dtype=F64)
    at_lo = exact_flow(x, mu, lam, q, sigma, lo)
    exact = mu + ((at_lo - mu) @ q * (lam / (lam + lo**2))) @ q.T  # D(x, lo) for N(mu, C)
    errors = [float((ode_x0(prior, x.view(4, 1, 1, N), sigma, n, lo).view(4, N) - exact).norm() / (x - mu).norm())
              for n in (100, 200, 400)]
    assert errors[-1] < 2e-3
    assert 0.4 < errors[1] / errors[0] < 0.6 and 0.4 < errors[2] / errors[1] < 0.6
    tweedie = mu + ((x - mu) @ q * (lam / (lam + sigma**2))) @ q.T
    one = ode_x0(prior, x.view(4, 1, 1, N), sigma, 1, lo).view(4, N)
    assert torch.allclose(one, tweedie, rtol=1e-12, atol=1e-12)


@pytest.mark.fast
def test_x0_langevin_samples_the_closed_form_gaussian_of_a_linear_channel():
    """With L = ||y - A x||^2 / (2 s^2) and the tie to x0_hat of width sigma, the x0 step's target is
    N(m, H^-1), H = A^T A / s^2 + I / sigma^2, m = H^-1 (A^T y / s^2 + x0_hat / sigma^2). The
    unadjusted chain keeps the mean and has the covariance (H - eta H^2 / 2)^-1 (the fixed point of
    Sigma = (I - eta H) Sigma (I - eta H) + 2 eta I), which at half the stable step is far from H^-1."""
    g = torch.Generator().manual_seed(1)
    m, s, sigma, chains = 3, 0.3, 0.5, 10000
    a = torch.randn(m, N, generator=g, dtype=F64)
    op = DenseOperator(a, (1, 1, N))
    channel = GaussianNoise(s)
    y = channel.measure(op.forward(torch.rand(1, 1, 1, N, generator=g, dtype=F64)), ImageRandom(0, [0], MEASUREMENT)).y
    copies = y.expand(chains, -1)
    problem = Problem(op, channel, Measurement(copies, copies, copies))
    x0_hat = torch.rand(N, generator=g, dtype=F64)
    h = a.T @ a / s**2 + torch.eye(N, dtype=F64) / sigma**2
    mean = torch.linalg.solve(h, a.T @ y[0] / s**2 + x0_hat / sigma**2)
    eta = tied_step(problem, sigma, 0.5)
    assert eta == pytest.approx(1.0 / float(torch.linalg.eigvalsh(h).max()), rel=1e-6)  # lambda_max by Lanczos
    ula_cov = torch.linalg.inv(h - eta * h @ h / 2)
    start = x0_hat.expand(chains, 1, 1, N).clone()
    z = tied_langevin(problem, start, start, sigma, 300, eta, as_stream(torch.Generator().manual_seed(2), chains))
    z = z.view(chains, N)
    std_error = (ula_cov.diagonal() / chains).sqrt()
    assert ((z.mean(0) - mean).abs() < 5 * std_error).all()
    root = torch.linalg.cholesky(h)  # compare covariances whitened by the target's, H = R R^T
    white = lambda c: root.T @ c @ root  # noqa: E731  (the identity for the target, I - eta H / 2 inverted for the chain)
    assert float((white(torch.cov(z.T)) - white(ula_cov)).norm()) < 0.1
    assert float((white(ula_cov) - torch.eye(N, dtype=F64)).norm()) > 0.5  # the test tells them apart


@pytest.mark.in_process
def test_daps_runs_end_to_end_and_counts_levels_times_ode_steps(make_cfg, tmp_path):
    summary = run(make_cfg(*TINY, "method=daps", "num_images=2", "method.num_levels=10", "method.ode_steps=2",
                           "method.langevin_steps=5", f"+run_dir={tmp_path / 'run'}"))
    assert summary["nfe"] == 20 and summary["num_diverged"] == 0 and math.isfinite(summary["psnr_mean"])


@pytest.mark.fast
def test_daps_refuses_a_noiseless_quantizer_without_a_surrogate():
    from qcsbench.channels import UniformQuantizer
    from qcsbench.errors import ConfigError

    op = DenseOperator(torch.randn(3, N, dtype=F64), (1, 1, N))
    channel = UniformQuantizer(2, noise_std=0.0)
    problem = Problem(op, channel, channel.measure(op.forward(torch.rand(1, 1, 1, N, dtype=F64)), ImageRandom(0, [0], 0)))
    prior = gaussian_prior(torch.Generator().manual_seed(0))[0]
    with pytest.raises(ConfigError, match="method.surrogate_std=null"):
        DAPS(num_levels=2, progress=False).recover(problem, prior, 0)
