"""DPS through a network: the guidance gradient is grad_x G(x) with G(x) = L(A D(x, sigma)),
the denoiser's Jacobian included (shipped ncsn_mnist and a tiny random ADM, in float64)."""
from __future__ import annotations

import pytest
import torch

from qcsbench.channels import UniformQuantizer
from qcsbench.data import embedded_mnist
from qcsbench.likelihood.data_term import nll, nll_grad
from qcsbench.samplers.dps import guidance_grad
from qcsbench.operators import DenseOperator
from qcsbench.priors.adm import adm_prior
from qcsbench.priors.trained import trained_prior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, ImageRandom
from tests.prior_files import TINY_ADM, adm_file

# Network priors, seconds a case: in process, not in the fast subset.
pytestmark = pytest.mark.in_process

SIGMA = 0.3
M = 60


@pytest.fixture(scope="module", params=["ncsn_mnist", "adm"])
def prior(request, tmp_path_factory):
    if request.param == "ncsn_mnist":
        return trained_prior(shipped="ncsn_mnist").to("cpu", torch.float64)
    path = tmp_path_factory.mktemp("adm") / "adm.pt"
    adm_file(path)
    return adm_prior(path, **TINY_ADM).to("cpu", torch.float64)


@pytest.fixture(scope="module")
def digits():
    """(problem, x_t): two MNIST digits, 1 bit, a Gaussian A; x_t = truth + SIGMA * noise."""
    g = torch.Generator().manual_seed(0)
    truth = embedded_mnist("test").batch([0, 1]).double()
    op = DenseOperator(torch.randn(M, 784, generator=g, dtype=torch.float64) / M**0.5, (1, 28, 28))
    channel = UniformQuantizer(1, noise_std=0.05)
    problem = Problem(op, channel, channel.measure(op.forward(truth), ImageRandom(0, [0, 1], MEASUREMENT)))
    return problem, truth + SIGMA * torch.randn(truth.shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("guidance", ["nll", "sqrt_nll"])
def test_guidance_gradient_matches_a_finite_difference_through_the_network(prior, digits, guidance):
    problem, x = digits
    grad, _ = guidance_grad(problem, prior, x, SIGMA, guidance)

    def objective(v):  # G summed over the two images
        value = nll(problem, prior.denoise(v, SIGMA))
        return float((value.sqrt() if guidance == "sqrt_nll" else value).sum())

    v, h = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64), 1e-6
    fd = (objective(x + h * v) - objective(x - h * v)) / (2 * h)
    assert float((grad * v).sum()) == pytest.approx(fd, rel=1e-5)


def test_the_denoiser_jacobian_changes_the_guidance(prior, digits):
    """Dropping the Jacobian (the gradient of L at x0 = D(x), what a no_grad denoiser gives)
    is a different direction: the test the GMM-only DPS test could not be."""
    problem, x = digits
    grad, x0 = guidance_grad(problem, prior, x, SIGMA, "nll")
    free = nll_grad(problem, x0)
    assert float((grad - free).norm() / free.norm()) > 0.1
