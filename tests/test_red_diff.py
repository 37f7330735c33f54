"""RED-diff (qcsbench/methods/red_diff.py): the gradient it hands Adam, its fixed point on a Gaussian
prior and a linear Gaussian channel, per-image independence, and whole runs."""
from __future__ import annotations

import pytest
import torch

from conftest import TINY
from qcsbench.channels import GaussianNoise, LogisticChannel, UniformQuantizer
from qcsbench.errors import ConfigError
from qcsbench.methods.red_diff import WEIGHTINGS, RedDiff, red_diff
from qcsbench.operators import DenseOperator
from qcsbench.priors import GaussianMixturePrior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom
from qcsbench.runner import run

F64 = torch.float64
SHAPE, N, M = (1, 3, 4), 12, 8


def gaussian_prior(components=1, seed=1):
    """A mixture with full covariances; one component is a Gaussian N(m, C), whose denoiser is exact and linear."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(components, N, generator=g, dtype=F64)
    b = torch.randn(components, N, N, generator=g, dtype=F64) * 0.1
    covs = b @ b.transpose(1, 2) + 0.01 * torch.eye(N, dtype=F64)
    weights = torch.full((components,), 1.0 / components, dtype=F64)
    return GaussianMixturePrior.from_covariances(weights, means, covs, SHAPE, torch.tensor([1.0, 0.1], dtype=F64))


def problem_for(channel, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(M, N, generator=g, dtype=F64) / M**0.5
    op = DenseOperator(a, SHAPE)
    x = torch.rand(batch, *SHAPE, generator=g, dtype=F64)
    return Problem(op, channel, channel.measure(op.forward(x), ImageRandom(seed, range(batch), MEASUREMENT))), a


class NoNoise:
    """A sampler stream that draws eps = 0: RED-diff's deterministic variant."""

    def __init__(self, batch):
        self.batch = batch

    def randn(self, *shape, dtype=torch.float32):
        return torch.zeros(self.batch, *shape, dtype=dtype)


@pytest.mark.fast
@pytest.mark.parametrize("channel", [UniformQuantizer(1, noise_std=0.1), GaussianNoise(0.1),
                                     LogisticChannel(temperature=0.2)])
def test_the_applied_gradient_is_float64_autograd_of_the_objective_with_the_stop_gradient(channel):
    """At every iteration the loop hands Adam grad_mu of L(mu) + lam w(sigma) <sg(eps_hat - eps), mu>,
    x_t = mu + sigma eps, eps_hat = (x_t - D(x_t, sigma)) / sigma; here L is written out for each channel
    (probit, Gaussian, logistic) and differentiated by autograd, the denoiser's output held fixed."""
    problem, a = problem_for(channel)
    prior, lam, y = gaussian_prior(components=2), 0.7, problem.measurement.y
    seen = []
    red_diff(prior, torch.rand(2, *SHAPE, dtype=F64), [2.0, 0.5, 0.1], ImageRandom(0, [0, 1], SAMPLER), problem,
             lam, "sqrt", lr=0.05, progress=False, callback=seen.append)
    nll = {"uniform": lambda z: -torch.special.log_ndtr(y * z / 0.1),
           "none": lambda z: (y - z) ** 2 / (2 * 0.1**2),
           "logistic": lambda z: torch.nn.functional.softplus(-y * z / 0.2)}[channel.name]
    for step in seen:
        sigma, eps = step["sigma"], step["eps"]
        x_t = step["mu"] + sigma * eps
        residual = ((x_t - prior.denoise(x_t, sigma)) / sigma - eps).detach()  # sg: a constant in mu
        mu = step["mu"].clone().requires_grad_(True)
        objective = nll(mu.reshape(2, -1) @ a.T).sum() + lam * sigma**0.5 * (residual * mu).sum()
        (expected,) = torch.autograd.grad(objective, mu)
        assert torch.allclose(step["grad"], expected, rtol=1e-10, atol=1e-12)
    assert [step["sigma"] for step in seen] == [2.0, 0.5, 0.1] and all(step["eps"].abs().sum() > 0 for step in seen)


def covariance(prior):
    """C of a one-component mixture, from its eigendecomposition."""
    return prior.eigvecs[0] @ torch.diag(prior.eigvals[0]) @ prior.eigvecs[0].T


def stationary_point(problem, a, prior, sigma, c):
    """The closed-form zero of the expected gradient, in float64. For N(m, C) the denoiser is
    D(x, s) = m + C (C + s^2 I)^{-1} (x - m), so eps_hat(mu + s eps) - eps = s (C + s^2 I)^{-1} (mu - m)
    - C (C + s^2 I)^{-1} eps: affine in eps, with mean s (C + s^2 I)^{-1} (mu - m). With L = ||y - A mu||^2 / (2 t^2)
    the expected gradient is zero where (A^T A / t^2 + c P) mu = A^T y / t^2 + c P m, P = (C + s^2 I)^{-1},
    c = lam w(s) s."""
    t2, y = problem.channel.noise_std**2, problem.measurement.y
    mean, cov = prior.means[0], covariance(prior)
    p = torch.linalg.inv(cov + sigma**2 * torch.eye(N, dtype=F64))
    return torch.linalg.solve(a.T @ a / t2 + c * p, (y @ a / t2 + c * mean @ p).T).T


def gaussian_map(problem, a, prior, sigma):
    """argmax_x p(y | x) N(x; m, C + sigma^2 I), in its Kalman form m + C' A^T (A C' A^T + t^2 I)^{-1} (y - A m)."""
    t2, y = problem.channel.noise_std**2, problem.measurement.y
    mean, cov = prior.means[0], covariance(prior) + sigma**2 * torch.eye(N, dtype=F64)
    gain = cov @ a.T @ torch.linalg.inv(a @ cov @ a.T + t2 * torch.eye(M, dtype=F64))
    return mean + (y - mean @ a.T) @ gain.T


@pytest.mark.in_process  # 1500 iterations: seconds, not the fast subset
@pytest.mark.parametrize("weighting, lam", [("linear", 5.0), ("sqrt", 2.0), ("const", 1 / 0.2)])
def test_fixed_point_on_a_gaussian_prior_and_a_linear_channel_is_the_closed_form_one(weighting, lam):
    """The deterministic variant (eps = 0 at every iteration) at one level sigma: for a Gaussian prior the
    gradient is affine in eps, so eps = 0 gives exactly its average over the noise (as would the antithetic
    pair eps, -eps). The loop converges from mu = 0 to the closed-form stationary point (``stationary_point``),
    up to the jitter of Adam's constant step, and the gradient it applies there is zero (to rounding). With const weighting and lam = 1 / sigma (c = 1) it is the MAP under the prior smoothed to
    sigma, N(m, C + sigma^2 I), which ``gaussian_map`` computes by a second formula."""
    sigma, lr = 0.2, 0.005
    problem, a = problem_for(GaussianNoise(0.1))
    prior = gaussian_prior()
    star = stationary_point(problem, a, prior, sigma, lam * WEIGHTINGS[weighting](sigma) * sigma)
    if weighting == "const":
        assert torch.allclose(star, gaussian_map(problem, a, prior, sigma), rtol=1e-10, atol=1e-12)
    seen = []
    run_from = lambda mu, k: red_diff(prior, mu, [sigma] * k, NoNoise(2), problem, lam, weighting, lr,
                                      progress=False, callback=seen.append).reshape(2, -1)
    assert (run_from(torch.zeros(2, *SHAPE, dtype=F64), 1500) - star).abs().max() < 1e-3 * star.abs().max()
    run_from(star.view(2, *SHAPE), 1)
    assert seen[-1]["grad"].abs().max() < 1e-10 * seen[0]["grad"].abs().max()


@pytest.mark.fast
def test_a_batch_gives_each_image_what_it_gets_alone():
    """Adam's state is per element and every image draws its own stream, so recovering images 0 and 1
    together or one at a time gives the same result (float32, as run.py recovers)."""
    problem, _ = problem_for(UniformQuantizer(1, noise_std=0.1))
    op32 = DenseOperator(problem.operator.a.float(), SHAPE)
    prior = gaussian_prior(components=3).to(dtype=torch.float32)
    method = RedDiff(num_levels=30, sigma_max=2.0, sigma_min=0.05, lam=3.0, lr=0.05, pixel_rms=0.5, progress=False)

    def recover(indices):
        meas = problem.measurement.select(indices).to(dtype=torch.float32)
        return method.recover(Problem(op32, problem.channel, meas), prior, ImageRandom(0, indices, SAMPLER)).x_hat

    both = recover([0, 1])
    assert torch.allclose(both, torch.cat([recover([0]), recover([1])]), rtol=0, atol=1e-6)
    assert not torch.allclose(both[0], both[1])


@pytest.mark.fast
def test_a_noiseless_quantizer_is_refused_in_one_sentence():
    problem, _ = problem_for(UniformQuantizer(2, noise_std=0.0))
    with pytest.raises(ConfigError, match="method=red_diff is not allowed for a noiseless channel"):
        RedDiff(progress=False).recover(problem, gaussian_prior(), 0)


@pytest.mark.in_process
@pytest.mark.parametrize("overrides", [["bits=1"], ["bits=2"], ["quantizer=logistic"], ["quantizer=none"]])
def test_red_diff_runs_end_to_end(make_cfg, tmp_path, overrides):
    cfg = make_cfg(*TINY, "method=red_diff", "method.num_levels=20", "num_images=2", "batch_size=2", *overrides,
                   f"+run_dir={tmp_path / 'run'}")
    summary = run(cfg)
    assert summary["num_diverged"] == 0 and summary["nfe"] == 20 and summary["psnr_mean"] > 8, summary

