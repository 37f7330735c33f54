"""The annealed Langevin loop against a closed-form posterior (a one-component Gaussian prior)."""
import pytest
import torch

from qcsbench.channels import GaussianNoise
from qcsbench.likelihood.diagonal import DiagonalLikelihoodScore
from qcsbench.operators import gaussian
from qcsbench.priors import GaussianMixturePrior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom
from qcsbench.samplers.counted import CountedPrior
from qcsbench.samplers.langevin import annealed_langevin


SHAPE = (1, 4, 4)
D, M = 16, 6


@pytest.mark.in_process
def test_sample_mean_matches_the_closed_form_posterior_mean():
    torch.set_default_dtype(torch.float64)
    try:
        g = torch.Generator().manual_seed(1)
        mu = torch.rand(D, generator=g)
        q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
        cov = (q * torch.linspace(0.05, 0.5, D)) @ q.T
        prior = GaussianMixturePrior.from_covariances(torch.ones(1), mu[None], cov[None], SHAPE, [1.0])
        op = gaussian(SHAPE, M, seed=2).to(dtype=torch.float64)
        channel = GaussianNoise(noise_std=0.3)
        x_true = torch.rand(1, *SHAPE, generator=g)
        meas = channel.measure(op.forward(x_true), ImageRandom(0, [0], MEASUREMENT))
        chains = 400
        meas = meas.select([0] * chains)
        problem = Problem(op, channel, meas)

        beta = 0.05
        rng = ImageRandom(0, range(chains), SAMPLER)
        counted = CountedPrior(prior)
        x = annealed_langevin(counted, torch.zeros(chains, *SHAPE), [beta], rng,
                              DiagonalLikelihoodScore(problem), step_lr=0.01, steps_per_level=600, progress=False)
        assert counted.nfe == 600

        # At level beta the chain targets N(mu, C + beta^2 I) times N(y; A x, sigma^2 + beta^2 ||a_m||^2):
        a = op.matrix()
        prior_cov = cov + beta**2 * torch.eye(D)
        noise_cov = torch.diag(0.09 + beta**2 * (a**2).sum(1))
        gain = prior_cov @ a.T @ torch.linalg.inv(a @ prior_cov @ a.T + noise_cov)
        post_mean = mu + gain @ (meas.y[0] - a @ mu)
        post_cov = prior_cov - gain @ a @ prior_cov

        sample_mean = x.reshape(chains, -1).mean(0)
        z = (sample_mean - post_mean) / (torch.diag(post_cov).sqrt() / chains**0.5)
        assert float(z.abs().max()) < 4.5, z
        # and the measurements moved the mean away from the prior's
        assert float((post_mean - mu).abs().max()) > 10 * float((sample_mean - post_mean).abs().max()) / 4.5
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.fast
def test_step_cap_only_where_the_reference_step_is_unstable():
    from qcsbench.channels import UniformQuantizer
    from qcsbench.samplers.langevin import step_sizes
    from qcsbench.operators import ill_conditioned

    channel = UniformQuantizer(2, noise_std=0.05)
    z = torch.zeros(1, 400)
    meas = channel.measure(z, ImageRandom(0, [0], MEASUREMENT))
    beta_last = 0.01
    for op, capped in ((gaussian((1, 28, 28), 200, seed=0), False), (ill_conditioned((1, 28, 28), 400, 0, 1000.0), True)):
        m = op.m
        score = DiagonalLikelihoodScore(Problem(op, channel, meas.select([0]) if m == 400 else
                                                channel.measure(torch.zeros(1, m), ImageRandom(0, [0], MEASUREMENT))))
        betas = [50.0, 1.0, 0.05, beta_last]
        alphas = step_sizes(5e-5, betas, score, 1.0, "plain", 1.9)
        bounds = score.curvature_bounds(betas).tolist()
        for beta, alpha, bound in zip(betas[:3], alphas, bounds):
            plain = 5e-5 * (beta / beta_last) ** 2
            # the bound is lambda_max(A A^T) / min_m (sigma^2 + beta^2 ||a_m||^2), computed independently
            a = op.matrix().double()
            expected = float(torch.linalg.eigvalsh(a @ a.T).max() / (0.05**2 + beta**2 * (a**2).sum(1)).min())
            assert bound == pytest.approx(expected, rel=1e-4)
            if capped:
                assert alpha == pytest.approx(1.9 / (1 / beta**2 + bound)) and alpha < plain
            else:
                assert alpha == plain
            assert alpha * (1 / beta**2 + bound) < 2  # stable
        assert step_sizes(5e-5, betas, score, 1.0, "plain", None)[:3] == [5e-5 * (b / beta_last) ** 2 for b in betas[:3]]


@pytest.mark.fast
def test_one_diverged_chain_does_not_poison_its_batch():
    """weighting=norm_ratio_batch (QCS-SGM+'s default) with one NaN chain in a batch of 8: that
    chain stays NaN, the other seven run exactly as they run without it."""
    from qcsbench.channels import UniformQuantizer
    from qcsbench.likelihood.ep import EPLikelihoodScore

    g = torch.Generator().manual_seed(3)
    prior = GaussianMixturePrior.from_covariances(torch.ones(1), torch.rand(1, D, generator=g),
                                                  0.05 * torch.eye(D)[None], SHAPE, [1.0])
    op = gaussian(SHAPE, M, seed=2).to(dtype=torch.float64)
    channel = UniformQuantizer(1, noise_std=0.1)
    meas = channel.measure(op.forward(torch.rand(8, *SHAPE, generator=g, dtype=torch.float64)),
                           ImageRandom(0, range(8), MEASUREMENT))
    x0 = torch.rand(8, *SHAPE, generator=g, dtype=torch.float64)
    x0[3] = float("nan")

    def sample(indices):
        score = EPLikelihoodScore(Problem(op, channel, meas.select(indices)))
        return annealed_langevin(prior, x0[indices], [1.0, 0.3, 0.1], ImageRandom(0, indices, SAMPLER), score,
                                 step_lr=1e-3, steps_per_level=3, gamma=0.5, weighting="norm_ratio_batch",
                                 progress=False)

    others = [0, 1, 2, 4, 5, 6, 7]
    together, alone = sample(list(range(8))), sample(others)
    assert bool(torch.isnan(together[3]).all()) and bool(torch.isfinite(together[others]).all())
    assert torch.allclose(together[others], alone, rtol=1e-10, atol=1e-12)


def test_report_previous_is_the_state_before_the_last_update():
    """QCS-SGM's report_previous (read through the sampler's callback) reports after K steps what
    K - 1 steps end on: the chains draw the same noise up to there. The prior counts the NFE."""
    from qcsbench.methods.annealed_langevin import AnnealedLangevin

    g = torch.Generator().manual_seed(4)
    prior = GaussianMixturePrior.from_covariances(torch.ones(1), torch.rand(1, D, generator=g),
                                                  0.05 * torch.eye(D)[None], SHAPE, [0.3])
    op = gaussian(SHAPE, M, seed=2)
    channel = GaussianNoise(noise_std=0.1)
    meas = channel.measure(op.forward(torch.rand(3, *SHAPE, generator=g)), ImageRandom(0, range(3), MEASUREMENT))
    problem = Problem(op, channel, meas)

    def recover(**settings):
        method = AnnealedLangevin(likelihood="linear", step_lr=1e-3, max_step_ratio=None, progress=False, **settings)
        return method.recover(problem, prior, ImageRandom(0, range(3), SAMPLER))

    previous, shorter = recover(steps_per_level=3, report_previous=True), recover(steps_per_level=2)
    assert torch.equal(previous.x_hat, shorter.x_hat)
    assert (previous.nfe, shorter.nfe) == (3, 2)
    assert not torch.equal(recover(steps_per_level=3).x_hat, previous.x_hat)
