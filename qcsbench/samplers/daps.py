"""Decoupled annealing posterior sampling (DAPS, Zhang et al., CVPR 2025), VE form.

At each annealing level sigma_t (descending, the last one's sample is the result):

    x0_hat = ODE(x_t, sigma_t)            the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma
                                          from sigma_t to 0 by a few Euler steps (no gradient through D)
    x0     ~ exp(-L(x0) - ||x0 - x0_hat||^2 / (2 sigma_t^2))   by Langevin from x0_hat (tied_langevin)
    x_{t-1} = x0 + sigma_{t-1} noise

L is the channel's negative log-likelihood. The tie width r_t = sigma_t is the one DAPS's code
uses (its ``gaussian`` prior solver). The ODE's cost is ``ode_steps`` denoiser calls per level.
"""
from __future__ import annotations

import torch

from qcsbench.progress import steps
from qcsbench.samplers.ode import ode_path
from qcsbench.samplers.tied_langevin import tied_langevin, tied_step


def edm_sigmas(sigma_max: float, sigma_min: float, num: int, rho: float = 7.0) -> list[float]:
    """Karras et al.'s (EDM) ladder, which DAPS uses for its annealing and for its ODE:
    (hi^(1/rho) + i / (num - 1) (lo^(1/rho) - hi^(1/rho)))^rho for i = 0 .. num - 1, descending;
    denser at the small levels than the geometric ladder. num = 1 gives [sigma_max]."""
    if num == 1:
        return [float(sigma_max)]
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(hi + i / (num - 1) * (lo - hi)) ** rho for i in range(num)]


def ode_x0(prior, x, sigma: float, num_steps: int, sigma_min: float):
    """DAPS's x0 estimate: ``num_steps`` Euler steps of the probability-flow ODE from sigma down to
    0, on the EDM grid from sigma to sigma_min followed by 0. An Euler step is DDIM's
    (``samplers.ode``), so the last one (to 0) returns the denoiser's output and num_steps = 1 is
    Tweedie's estimate D(x, sigma). A level at or below sigma_min takes that one step."""
    grid = edm_sigmas(sigma, sigma_min, num_steps) if sigma > sigma_min else [sigma]
    return ode_path(prior, x, grid + [0.0])


@torch.no_grad()
def daps(prior, x, sigmas, rng, problem, ode_steps=5, ode_sigma_min=0.01, langevin_steps=100, step_ratio=0.5,
         extra_var=0.0, progress=True, callback=None):
    """Run the loop from x = x_T down the annealing ladder ``sigmas``; returns the last level's x0.
    Each level's Langevin step is step_ratio times the largest stable one for its tie (``tied_step``).
    ``callback`` sees each level's x_t and its ODE estimate (``denoised``)."""
    sigmas = [float(s) for s in sigmas]
    for i, sigma in enumerate(steps(sigmas, "daps", progress)):
        x0_hat = ode_x0(prior, x, sigma, ode_steps, ode_sigma_min)
        if callback is not None:
            callback(dict(i=i, sigma=sigma, x=x, denoised=x0_hat))
        eta = tied_step(problem, sigma, step_ratio, extra_var)
        x0 = tied_langevin(problem, x0_hat, x0_hat, sigma, langevin_steps, eta, rng, extra_var)
        if i == len(sigmas) - 1:
            return x0
        x = x0 + sigmas[i + 1] * rng.randn(*x.shape[1:], dtype=x.dtype)
