"""The exact posterior sampler against independent computations: scipy's truncated normal, a
quadrature of the posterior at N = 2 and importance sampling with the prior as proposal, where
the likelihood is the channel's own log_likelihood (the product of bin probabilities)."""
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from qcsbench.calibration import random_mixture
from qcsbench.channels import GaussianNoise, LogisticChannel, UniformQuantizer
from qcsbench.exact_posterior import GibbsPosterior, mixture_draws, ndtri_log, truncated_normal
from qcsbench.operators import DenseOperator, gaussian, ill_conditioned
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, ImageRandom


F64 = torch.float64


@pytest.mark.fast
def test_ndtri_log_inverts_log_ndtr_far_into_the_tail():
    log_p = -torch.logspace(-3, 6, 50, dtype=F64)
    t = ndtri_log(log_p)
    assert torch.allclose(torch.special.log_ndtr(t), log_p, rtol=1e-12, atol=0)
    moderate = log_p > -700
    assert np.allclose(t[moderate].numpy(), scipy.special.ndtri_exp(log_p[moderate].numpy()), rtol=1e-10)


@pytest.mark.fast
@pytest.mark.parametrize("lower, upper", [(-math.inf, 0.0), (0.0, math.inf), (-1.0, 0.5), (2.0, math.inf),
                                          (30.0, 31.0), (-math.inf, -40.0), (100.0, math.inf), (5.0, 5.001)])
def test_truncated_normal_draws_match_scipy_far_into_the_tails(lower, upper):
    """Bins given in the units of N(mean = 2, std = 0.5); moments within 5 Monte Carlo standard errors."""
    n, mean, std = 50_000, 2.0, 0.5
    g = torch.Generator().manual_seed(0)
    lo, hi = torch.full((n,), mean + std * lower, dtype=F64), torch.full((n,), mean + std * upper, dtype=F64)
    x = truncated_normal(torch.full((n,), mean, dtype=F64), std, lo, hi, torch.rand(n, generator=g, dtype=F64))
    assert bool(((x >= lo) & (x <= hi)).all())
    expected_mean, expected_var = scipy.stats.truncnorm.stats(lower, upper, loc=mean, scale=std, moments="mv")
    var = float(x.var())
    fourth = float(((x - x.mean()) ** 4).mean())
    assert abs(float(x.mean()) - expected_mean) < 5 * math.sqrt(var / n)
    assert abs(var - expected_var) < 5 * math.sqrt((fourth - var**2) / n)
    if math.isfinite(lower) and lower > 10:  # the bulk of the mass sits at the lower edge
        assert scipy.stats.kstest(x.numpy(), scipy.stats.truncnorm(lower, upper, loc=mean, scale=std).cdf).pvalue > 1e-3


def instance(n, m, channel, operator="gaussian", seed=0, gain=1.0):
    """A random mixture, A (times gain: a larger A makes the same noise more informative), a truth, y."""
    g = torch.Generator().manual_seed(seed)
    prior = random_mixture(n, 3, g)
    op = (gaussian(prior.shape, m, seed=seed) if operator == "gaussian"
          else ill_conditioned(prior.shape, m, seed=seed, kappa=1000.0))
    op = DenseOperator(gain * op.matrix().to(F64), prior.shape)
    truth = mixture_draws(prior, 1, g)
    meas = channel.measure(op.forward(truth.view(1, *prior.shape)), ImageRandom(seed, [0], MEASUREMENT))
    return prior, Problem(op, channel, meas)


def log_posterior(prior, problem, x):
    """log p(x) + log p(y | x) up to a constant, for points x of shape (P, N)."""
    z = x @ problem.operator.matrix().T
    return prior.log_prob(x.view(-1, *prior.shape), 0.0) + problem.channel.log_likelihood(problem.measurement, z).sum(1)


def weighted_moments(x, log_w):
    w = torch.softmax(log_w, 0)
    mean = w @ x
    centred = x - mean
    return mean, (w[:, None] * centred).T @ centred, float(1 / (w * w).sum())


def assert_moments_agree(samples, mean, cov, extra_se=0.0):
    """Mean and covariance entries within 5 standard errors of the samples' own (plus the
    reference's own Monte Carlo error, extra_se, as a share of the same)."""
    n = len(samples)
    centred = samples - samples.mean(0)
    se_mean = (samples.var(0) / n).sqrt() * math.sqrt(1 + extra_se)
    products = centred[:, :, None] * centred[:, None, :]
    se_cov = (products.var(0) / n).sqrt() * math.sqrt(1 + extra_se)
    assert bool(((samples.mean(0) - mean).abs() < 5 * se_mean).all()), (samples.mean(0), mean, se_mean)
    assert bool(((torch.cov(samples.T) - cov).abs() < 5 * se_cov + 1e-12).all()), (torch.cov(samples.T), cov)


# Seconds each (20,000 chains, 50 sweeps): not in the fast subset.
@pytest.mark.in_process
@pytest.mark.parametrize("bits, operator", [(1, "gaussian"), (2, "gaussian"), (1, "ill_conditioned"),
                                            (2, "ill_conditioned")])
def test_gibbs_matches_quadrature_at_two_pixels(bits, operator):
    prior, problem = instance(2, 2 if operator == "ill_conditioned" else 6, UniformQuantizer(bits, 0.05), operator)
    samples = GibbsPosterior(prior, problem).sample(20_000, torch.Generator().manual_seed(1), sweeps=50).reshape(-1, 2)
    axis = torch.linspace(-0.4, 1.4, 500, dtype=F64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    log_p = log_posterior(prior, problem, grid)
    edge = torch.cat([log_p.view(500, 500)[[0, -1]].flatten(), log_p.view(500, 500)[:, [0, -1]].flatten()])
    assert float(edge.max() - log_p.max()) < -30  # the grid holds the whole posterior
    mean, cov, _ = weighted_moments(grid, log_p)
    assert_moments_agree(samples, mean, cov)


@pytest.mark.in_process
@pytest.mark.parametrize("channel", [UniformQuantizer(1, 0.05), UniformQuantizer(2, 0.05), GaussianNoise(0.1)],
                         ids=["1bit", "2bit", "linear"])
def test_gibbs_matches_importance_sampling_from_the_prior(channel):
    """Informative enough that prior draws, or 2 sweeps, fail it (checked by hand), while the
    prior proposal keeps an effective sample size above 5,000 of 400,000."""
    prior, problem = instance(4, 6, channel, seed=3, gain=3.0)
    n = 20_000
    samples = GibbsPosterior(prior, problem).sample(n, torch.Generator().manual_seed(1), sweeps=50).reshape(n, -1)
    proposals = mixture_draws(prior, 400_000, torch.Generator().manual_seed(2))
    log_w = problem.channel.log_likelihood(problem.measurement, proposals @ problem.operator.matrix().T).sum(1)
    mean, cov, ess = weighted_moments(proposals, log_w)
    assert ess > 5_000
    assert_moments_agree(samples, mean, cov, extra_se=n / ess)


@pytest.mark.fast
def test_unsupported_problems_are_refused_in_one_sentence():
    prior, problem = instance(2, 3, LogisticChannel(0.1))
    with pytest.raises(ValueError, match="supports the uniform quantizer and Gaussian noise"):
        GibbsPosterior(prior, problem)
    prior, problem = instance(2, 3, UniformQuantizer(1, 0.0))
    with pytest.raises(ValueError, match="needs noise_std > 0"):
        GibbsPosterior(prior, problem)
