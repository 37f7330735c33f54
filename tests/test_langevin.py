"""The annealed Langevin loop against a closed-form posterior (a one-component Gaussian prior)."""
import torch

from qcsbench.channels import GaussianNoise
from qcsbench.langevin import annealed_langevin
from qcsbench.likelihood_scores import DiagonalLikelihoodScore
from qcsbench.operators import gaussian
from qcsbench.priors import GaussianMixturePrior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom

SHAPE = (1, 4, 4)
D, M = 16, 6


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
        x, nfe = annealed_langevin(torch.zeros(chains, *SHAPE), prior, DiagonalLikelihoodScore(problem), [beta],
                                   rng, step_lr=0.01, steps_per_level=600, progress=False)
        assert nfe == 600

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
