"""The prior contract, family by family: every prior qcsbench loads takes sigma as a float or
one level per image (shape (B,)), keeps the input's shape and dtype, is differentiable in x,
and satisfies D(x, sigma) = x + sigma^2 s(x, sigma); an image's result never depends on the
batch around it. Tiny random networks in each family's real file format, the shipped
ncsn_mnist, and a small Gaussian mixture. And the samplers' side: they switch autograd off themselves."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from qcsbench.channels import UniformQuantizer
from qcsbench.methods.annealed_langevin import AnnealedLangevin
from qcsbench.methods.diff_onebit import DiffOneBit
from qcsbench.methods.diffpir import DiffPIR
from qcsbench.methods.dps import DPS
from qcsbench.methods.oneshot import OneShot
from qcsbench.operators import DenseOperator
from qcsbench.priors import GaussianMixturePrior, Prior
from qcsbench.priors.adm import adm_prior
from qcsbench.priors.diffusers_models import ddpm_prior, ncsnpp_prior
from qcsbench.priors.ncsnv2 import ncsnv2_prior
from qcsbench.priors.trained import trained_prior
from qcsbench.priors.vp import VPEpsilonPrior, linear_alphas_cumprod
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom
from tests.prior_files import TINY_ADM, adm_file, ddpm_folder, ncsnpp_folder, ncsnv2_file, trained_file

# Network priors, seconds a case: in process, not in the fast subset.
pytestmark = pytest.mark.in_process

FAMILIES = ["gmm", "ncsnv2", "ncsnv2_deepest", "ddpm", "ncsnpp", "adm", "trained", "ncsn_mnist"]
# one level per image, off every ladder; NCSNv2 maps them to three different trained levels
PER_IMAGE = torch.tensor([0.03, 0.2, 0.7], dtype=torch.float64)
ONE = 0.3


def small_gmm():
    g = torch.Generator().manual_seed(1)
    d = 16
    means = torch.rand(3, d, generator=g, dtype=torch.float64)
    b = torch.randn(3, d, d, generator=g, dtype=torch.float64) * 0.2
    covs = b @ b.transpose(1, 2) + 0.01 * torch.eye(d, dtype=torch.float64)
    return GaussianMixturePrior.from_covariances(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), means, covs,
                                                 (1, 4, 4), torch.tensor([1.0, 0.1], dtype=torch.float64))


def loader(family, folder):
    """A function that loads the family's prior afresh (moving a network prior moves its module)."""
    if family == "gmm":
        return small_gmm
    if family in ("ncsnv2", "ncsnv2_deepest"):
        deep = family == "ncsnv2_deepest"
        size, channels, levels = (32, 3, (348.0, 0.01, 2311)) if deep else (28, 1, (50.0, 0.01, 232))
        ncsnv2_file(folder / "c.pth", channels=channels, image_size=size, deepest=deep, levels=levels)
        return lambda: ncsnv2_prior(folder / "c.pth", channels, size, ngf=4, deepest=deep, sigma_max=levels[0],
                                    sigma_min=levels[1], num_levels=levels[2])
    if family == "ddpm":
        ddpm_folder(folder / "ddpm")
        return lambda: ddpm_prior(folder / "ddpm")
    if family == "ncsnpp":
        ncsnpp_folder(folder / "ve")
        return lambda: ncsnpp_prior(folder / "ve")
    if family == "adm":
        adm_file(folder / "adm.pt")
        return lambda: adm_prior(folder / "adm.pt", **TINY_ADM)
    if family == "trained":
        trained_file(folder / "prior.pt")
        return lambda: trained_prior(folder / "prior.pt")
    return lambda: trained_prior(shipped="ncsn_mnist")


@pytest.fixture(scope="module", params=FAMILIES)
def priors(request, tmp_path_factory):
    """(the prior in float32, as the runner moves it; the same prior in float64)."""
    load = loader(request.param, tmp_path_factory.mktemp(request.param))
    return load().to("cpu", torch.float32), load().to("cpu", torch.float64)


def images(prior, dtype, seed=0):
    return torch.rand(len(PER_IMAGE), *prior.shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_follow_the_input(priors, dtype):
    """The float32 prior takes both dtypes; the float64 one gives float32 back to float32 input."""
    for prior, x in ((priors[0], images(priors[0], dtype)), (priors[1], images(priors[1], torch.float32))):
        for out in (prior.score(x, ONE), prior.denoise(x, PER_IMAGE.float())):
            assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


def test_denoiser_is_tweedie_of_the_score(priors):
    prior = priors[1]
    x = images(prior, torch.float64)
    for sigma in (ONE, PER_IMAGE):
        s2 = (PER_IMAGE.view(-1, 1, 1, 1) if torch.is_tensor(sigma) else torch.tensor(sigma, dtype=torch.float64)) ** 2
        torch.testing.assert_close(prior.denoise(x, sigma), x + s2 * prior.score(x, sigma), rtol=1e-12, atol=1e-12)


def test_denoiser_derivative_matches_a_directional_finite_difference(priors):
    """u^T J v of D by autograd (float64) against (f(x + h v) - f(x - h v)) / 2h with f = u^T D:
    fails when any part of the prior runs without autograd."""
    prior = priors[1]
    g = torch.Generator().manual_seed(1)
    x = images(prior, torch.float64).requires_grad_(True)
    u, v = torch.randn(x.shape, generator=g, dtype=torch.float64), torch.randn(x.shape, generator=g, dtype=torch.float64)
    for sigma in (ONE, PER_IMAGE):
        f = lambda z: (u * prior.denoise(z, sigma)).sum()  # noqa: E731
        (grad,) = torch.autograd.grad(f(x), x)
        h = 1e-7  # small: the max-pools of NCSNv2 are piecewise linear, and a larger step crosses their kinks
        with torch.no_grad():
            fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
        assert float((grad * v).sum()) == pytest.approx(float(fd), rel=1e-6)


def test_one_image_alone_equals_the_same_image_in_a_batch(priors):
    prior = priors[1]
    x = images(prior, torch.float64)
    for sigma in (ONE, PER_IMAGE):
        batch = prior.score(x, sigma)
        alone = prior.score(x[1:2], sigma if not torch.is_tensor(sigma) else sigma[1:2])
        assert relative(alone, batch[1:2]) < 1e-10


def test_per_image_sigma_equals_a_loop_over_images(priors):
    prior = priors[1]
    x = images(prior, torch.float64)
    looped = torch.cat([prior.denoise(x[i:i + 1], float(s)) for i, s in enumerate(PER_IMAGE)])
    assert relative(prior.denoise(x, PER_IMAGE), looped) < 1e-10
    # and the levels really differ: one sigma for the batch gives another answer
    assert relative(prior.denoise(x, float(PER_IMAGE[0])), looped) > 1e-3


# ------------------------------------------------------------------ the samplers' side of the contract

class GradSpy(Prior):
    """A prior that records, at every call, whether autograd was on."""

    def __init__(self, inner):
        self.inner, self.shape, self.sigmas = inner, inner.shape, inner.sigmas
        self.grad_enabled = []

    def score(self, x, sigma):
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.inner.score(x, sigma)


@pytest.mark.parametrize("method", [
    AnnealedLangevin(name="qcs_sgm", num_levels=3, steps_per_level=1, progress=False, final_denoise=True),
    AnnealedLangevin(name="qcs_sgm_plus", likelihood="ep", gamma=0.5, weighting="norm_ratio_batch", num_levels=3,
                     steps_per_level=1, progress=False),
    AnnealedLangevin(name="ald", likelihood="linear", step_lr=2e-5, num_levels=3, steps_per_level=1, progress=False),
    DiffOneBit(num_levels=3, progress=False), DiffPIR(num_levels=3, progress=False), OneShot(),
    DPS(num_levels=3, progress=False)], ids=lambda m: m.name)
def test_samplers_build_no_autograd_graph_except_dps_through_its_denoiser(method):
    """The priors no longer switch autograd off, so each sampler must: a graph over a whole
    trajectory would cost memory and time. DPS alone differentiates through the denoiser."""
    g = torch.Generator().manual_seed(0)
    op = DenseOperator(torch.randn(10, 16, generator=g) / 10**0.5, (1, 4, 4))  # float32, as a run
    channel = UniformQuantizer(1, noise_std=0.1)
    x = torch.rand(2, 1, 4, 4, generator=g)
    problem = Problem(op, channel, channel.measure(op.forward(x), ImageRandom(0, [0, 1], MEASUREMENT)))
    spy = GradSpy(small_gmm().to(dtype=torch.float32))
    result = method.recover(problem, spy, ImageRandom(0, [0, 1], SAMPLER))
    assert spy.grad_enabled and torch.isfinite(result.x_hat).all() and not result.x_hat.requires_grad
    assert set(spy.grad_enabled) == {method.name == "dps"}


def test_vp_timestep_of_a_per_image_sigma_is_numpys_interpolation_in_log_sigma():
    prior = VPEpsilonPrior(torch.nn.Linear(1, 1), (1, 2, 2), linear_alphas_cumprod(1000))  # the DDPM / ADM schedule
    sigma = torch.tensor([1e-5, 0.013, 0.3, 2.0, 1e4], dtype=torch.float64)  # both ends clamp
    log_train = np.log(prior.train_sigmas.numpy())
    expected = np.interp(np.log(sigma.numpy()), log_train, np.arange(len(log_train)))
    np.testing.assert_allclose(prior.timestep(sigma).numpy(), expected, rtol=0, atol=1e-9)


def test_compiled_network_serves_only_gradient_free_calls(tmp_path):
    """prior.compile=true: the samplers (under no_grad) call the compiled module; DPS (autograd
    through the network) the eager one, whose input gradient is right (inductor's was not)."""
    trained_file(tmp_path / "prior.pt")
    prior = trained_prior(tmp_path / "prior.pt", compile=True).to("cpu", torch.float32)
    assert prior._compiled is not prior.net  # built lazily: nothing is compiled here
    with torch.no_grad():
        assert prior._forward is prior._compiled
    assert prior._forward is prior.net


def test_a_smaller_last_batch_reuses_the_compiled_network(tmp_path, monkeypatch):
    """prior.compile=true compiles the network with a dynamic batch dimension from the first call, so a
    run's last, smaller batch does not compile it again (counted by dynamo; the eager backend keeps
    the test fast, the graph capture is the same)."""
    import functools

    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    trained_file(tmp_path / "prior.pt")
    prior = trained_prior(tmp_path / "prior.pt", compile=True).to("cpu", torch.float32)
    torch._dynamo.reset()
    counters.clear()
    with torch.no_grad():
        prior.score(torch.rand(4, 1, 28, 28), 0.5)
        first = counters["stats"]["unique_graphs"]
        for batch in (3, 2):
            prior.score(torch.rand(batch, 1, 28, 28), torch.full((batch,), 0.3))
    assert first >= 1 and counters["stats"]["unique_graphs"] == first
    torch._dynamo.reset()
