"""PnP-DM's split Gibbs (samplers/split_gibbs.py, methods/pnp_dm.py): the prior step against the
closed-form p(x | z) of a Gaussian prior, the coupling schedule, and whole runs of pnp_dm and the
pnp_onebit preset. The likelihood step is tests/test_tied_langevin.py's."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from conftest import TINY
from qcsbench.errors import ConfigError
from qcsbench.priors import GaussianMixturePrior
from qcsbench.priors.base import geometric_sigmas
from qcsbench.randomness import BatchRandom
from qcsbench.runner import run
from qcsbench.samplers.split_gibbs import coupling_schedule, prior_levels, prior_step

CHAINS = 10000
SHAPE = (1, 2, 2)


def gaussian_prior():
    """One component: N(mu, C) on 4 pixels, C with spreads from 0.3 to 2."""
    g = torch.Generator().manual_seed(4)
    b = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = b @ b.T / 4 + 0.05 * torch.eye(4, dtype=torch.float64)
    mu = torch.tensor([0.5, 0.2, 0.7, 0.4], dtype=torch.float64)
    return GaussianMixturePrior.from_covariances([1.0], mu[None], cov[None], SHAPE, geometric_sigmas(10, 0.01, 50)), mu, cov


def closed_form(mu, cov, z, rho):
    """p(x | z) ∝ N(x; mu, C) N(z; x, rho^2 I): precision C^-1 + I / rho^2."""
    post = torch.linalg.inv(torch.linalg.inv(cov) + torch.eye(4, dtype=torch.float64) / rho**2)
    return post @ (torch.linalg.solve(cov, mu) + z / rho**2), post


def draws(prior, z, rho, ladder, eta):
    start = z.view(1, *SHAPE).expand(CHAINS, *SHAPE).clone()
    x = prior_step(prior, start, rho, ladder, eta, BatchRandom(torch.Generator().manual_seed(0), CHAINS))
    return x.reshape(CHAINS, 4)


@pytest.mark.fast
def test_the_prior_step_samples_the_closed_form_conditional_of_a_gaussian_prior():
    prior, mu, cov = gaussian_prior()
    rho, z = 0.8, torch.tensor([0.9, -0.3, 1.2, 0.1], dtype=torch.float64)
    mean, post = closed_form(mu, cov, z, rho)
    # 300 levels below rho: the ancestral step leaves out (1 - s'^2/s^2)^2 Cov[x0 | x_s] of each
    # transition's variance, an O(1 / levels) shortfall, here under 3 % (10 % at 100 levels)
    ladder = geometric_sigmas(rho, 0.01, 301)
    x = draws(prior, z, rho, ladder, eta=1.0)
    # the mean is exact at any number of levels (Tweedie's mean is linear in x for a Gaussian prior)
    assert (((x.mean(0) - mean) / (post.diagonal() / CHAINS).sqrt()).abs() < 4.5).all()
    ratio = torch.linalg.eigvalsh(torch.linalg.solve(post, torch.cov(x.T)))
    mc = 4.5 * (2 / CHAINS) ** 0.5
    assert (ratio < 1 + mc).all() and (ratio > 1 - 0.03 - mc).all(), ratio


@pytest.mark.fast
def test_deterministic_prior_steps_do_not_sample_the_conditional():
    """eta = 0 (DDIM's ODE) maps z to one point; eta = 0.5 keeps a third of the spread: only eta = 1
    is a Gibbs step."""
    prior, mu, cov = gaussian_prior()
    rho, z = 0.8, torch.tensor([0.9, -0.3, 1.2, 0.1], dtype=torch.float64)
    _, post = closed_form(mu, cov, z, rho)
    ladder = geometric_sigmas(rho, 0.01, 101)
    assert torch.cov(draws(prior, z, rho, ladder, eta=0.0).T).abs().max() < 1e-20
    half = torch.linalg.eigvalsh(torch.linalg.solve(post, torch.cov(draws(prior, z, rho, ladder, eta=0.5).T)))
    assert (half < 0.6).all()


@pytest.mark.fast
def test_coupling_schedule_and_levels():
    assert coupling_schedule(10.0, 0.5, 2.0, 4) == [10.0, 5.0, 2.5, 2.0]
    assert prior_levels(0.5, torch.tensor([1.0, 0.5, 0.2, 0.1], dtype=torch.float64)) == [0.5, 0.2, 0.1, 0.0]


@pytest.mark.fast
def test_the_coupling_must_descend():
    from qcsbench.methods.pnp_dm import PnPDM

    with pytest.raises(ConfigError, match=r"method.rho_max=0.1 is not allowed with method.rho_min=0.5"):
        PnPDM(rho_max=0.1, rho_min=0.5)


def tiny_run(make_cfg, tmp_path, *overrides):
    cfg = make_cfg(*TINY, *overrides, "method.iterations=4", "method.langevin_steps=3", f"+run_dir={tmp_path / 'run'}")
    return cfg, run(cfg)


@pytest.mark.in_process
@pytest.mark.parametrize("method,bits", [("pnp_dm", 1), ("pnp_onebit", 2)])
def test_runs_end_to_end(make_cfg, tmp_path, method, bits):
    """Both YAMLs run through the harness, pnp_onebit on a 2-bit channel with that channel's
    likelihood; NFE is the sum over sweeps of 1 + the ladder's levels below rho_k."""
    cfg, summary = tiny_run(make_cfg, tmp_path, f"method={method}", f"bits={bits}", "method.num_levels=10")
    method_obj = instantiate(cfg.method)
    ladder = geometric_sigmas(cfg.prior.sigma_max, cfg.prior.sigma_min, 10)
    rhos = coupling_schedule(method_obj.rho_max, method_obj.rho_decay, method_obj.rho_min, 4)
    assert summary["nfe"] == sum(len(prior_levels(rho, ladder)) - 1 for rho in rhos)
    assert summary["num_diverged"] == 0 and summary["psnr_mean"] > 8.0, summary

