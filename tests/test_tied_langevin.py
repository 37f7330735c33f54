"""Langevin under the channel likelihood plus a Gaussian tie (samplers/tied_langevin.py, the
likelihood step of PnP-DM and DAPS): with a Gaussian channel its target is Gaussian, with precision
P = A^T A / s^2 + I / tau^2 and mean P^{-1} (A^T y / s^2 + c / tau^2), computed here in float64."""
from __future__ import annotations

import pytest
import torch

from qcsbench.channels import Measurement
from qcsbench.channels.quantizer import GaussianNoise
from qcsbench.operators import DenseOperator
from qcsbench.problem import Problem
from qcsbench.randomness import BatchRandom
from qcsbench.samplers.tied_langevin import tied_langevin, tied_step

CHAINS = 10000
SHAPE = (1, 2, 2)


def gaussian_problem(chains, noise_std=0.7):
    """Three Gaussian measurements of a 4-pixel image, the same y for every chain."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64) / 3**0.5
    y = torch.randn(1, 3, generator=g, dtype=torch.float64).expand(chains, 3)
    return Problem(DenseOperator(a, SHAPE), GaussianNoise(noise_std), Measurement(y, y, y)), a, y[0]


@pytest.mark.fast
def test_the_chain_samples_the_closed_form_gaussian_target():
    problem, a, y = gaussian_problem(CHAINS)
    s, tau = problem.channel.noise_std, 0.4
    centre = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64)
    precision = a.T @ a / s**2 + torch.eye(4, dtype=torch.float64) / tau**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (a.T @ y / s**2 + centre / tau**2)

    # the unadjusted chain's stationary variance along an eigenvector of P is 1 / (p (1 - eta p / 2)):
    # with eta p <= 0.1 that is at most 5% more than the target's, allowed for below
    eta = tied_step(problem, tau, ratio=0.05)
    bias = 1 / (1 - eta * float(torch.linalg.eigvalsh(precision).max()) / 2) - 1
    assert bias < 0.053
    rng = BatchRandom(torch.Generator().manual_seed(0), CHAINS)
    z = torch.zeros(CHAINS, *SHAPE, dtype=torch.float64)
    z = tied_langevin(problem, z, centre.view(1, *SHAPE), tau, 300, eta, rng).reshape(CHAINS, 4)

    # Monte-Carlo error of the chains' mean and covariance (independent chains)
    err_mean = (z.mean(0) - mean) / (cov.diagonal() / CHAINS).sqrt()
    assert err_mean.abs().max() < 4.5
    emp = torch.cov(z.T)
    scale = (cov.diagonal()[:, None] * cov.diagonal()[None, :]).sqrt()
    assert ((emp - cov) / scale).abs().max() < 4.5 * (2 / CHAINS) ** 0.5 + bias

class OneRow:
    """Row ``row`` of the batch draws of a two-image BatchRandom seeded 1."""

    def __init__(self, row):
        self.row, self.batch = row, BatchRandom(torch.Generator().manual_seed(1), 2)

    def randn(self, *shape, dtype=torch.float32):
        return self.batch.randn(*shape, dtype=dtype)[self.row:self.row + 1]


@pytest.mark.fast
def test_per_image_ties_and_steps_are_used_per_image():
    """tie_std and step_size given per image act on each image as its own float does."""
    problem, _, _ = gaussian_problem(2)
    z0 = torch.randn(2, *SHAPE, dtype=torch.float64)
    tie, eta = torch.tensor([0.5, 2.0], dtype=torch.float64), torch.tensor([0.01, 0.03], dtype=torch.float64)
    both = tied_langevin(problem, z0, 0.0, tie, 5, eta, BatchRandom(torch.Generator().manual_seed(1), 2))
    one, _, _ = gaussian_problem(1)
    for i in range(2):
        alone = tied_langevin(one, z0[i:i + 1], 0.0, float(tie[i]), 5, float(eta[i]), OneRow(i))
        assert torch.allclose(alone, both[i:i + 1], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(alone, both[1 - i:2 - i])
