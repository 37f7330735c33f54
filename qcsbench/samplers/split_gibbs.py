"""Split Gibbs sampling with a diffusion model as the prior (PnP-DM, Wu et al., NeurIPS 2024;
docs/math.md §6).

The joint density pi(x, z) ∝ exp(-L(z) - P(x) - ||x - z||^2 / (2 rho^2)), L the channel's negative
log-likelihood and P = -log p the prior's, has the posterior as its x-marginal as rho -> 0. Each
iteration k draws from its two conditionals in turn, with rho_k = max(rho_0 decay^k, rho_min):

    likelihood step  z ~ pi(z | x) ∝ exp(-L(z) - ||z - x||^2 / (2 rho_k^2))   (tied_langevin, J steps)
    prior step       x ~ pi(x | z) ∝ p(x) N(z; x, rho_k^2 I)                  (prior_step)

The prior step is a denoising problem: pi(x | z) is p(x_0 | x_rho = z) for the VE diffusion
x_rho = x_0 + rho eps, so the prior's reverse diffusion started at z at level rho samples it.
"""
from __future__ import annotations

import math

import torch

from qcsbench.progress import steps
from qcsbench.samplers.tied_langevin import tied_langevin, tied_step


def coupling_schedule(rho_max: float, decay: float, rho_min: float, iterations: int) -> list[float]:
    """rho_k = max(rho_max decay^k, rho_min) for k = 0 .. iterations - 1."""
    return [max(rho_max * decay**k, rho_min) for k in range(iterations)]


def prior_levels(rho: float, ladder) -> list[float]:
    """The levels a prior step visits: rho, then the ladder's levels below rho, then 0."""
    return [float(rho)] + [float(s) for s in ladder if s < rho] + [0.0]


@torch.no_grad()
def prior_step(prior, z, rho: float, ladder, eta: float, rng):
    """A sample of p(x_0 | x_rho = z): DDIM(eta) in VE form from x = z at level rho down the
    ladder's levels below rho, one denoiser call a level. From s to s' < s:

        x0 = D(x, s),  eps = (x - x0) / s,  c = eta s' sqrt(1 - s'^2 / s^2)
        x <- x0 + sqrt(s'^2 - c^2) eps + c xi

    eta = 1 is DDPM's ancestral step (mean x0 + (s'^2 / s^2)(x - x0), variance c^2: the reverse
    transition given x0 = D(x, s)), the one whose mean is exact for a Gaussian prior at any number
    of levels; eta = 0 is DDIM's deterministic step, which maps z to a single point. The last
    level returns x0 = D(x, s) (s' = 0)."""
    levels = prior_levels(rho, ladder)
    x = z
    for s, nxt in zip(levels[:-1], levels[1:]):
        x0 = prior.denoise(x, s)
        if nxt == 0.0:
            return x0
        c = eta * nxt * math.sqrt(1.0 - (nxt / s) ** 2)
        x = x0 + math.sqrt(nxt**2 - c**2) / s * (x - x0) + c * rng.randn(*x.shape[1:], dtype=x.dtype)
    return x


@torch.no_grad()
def split_gibbs(prior, x, rhos, rng, problem, ladder, langevin_steps: int, step_ratio: float, eta: float = 1.0,
                extra_var: float = 0.0, progress=True, callback=None):
    """Run the iterations from x = x^(0), one per coupling rho in ``rhos``; returns the last x.
    The likelihood step starts at x and takes ``step_ratio`` of its stable step (``tied_step``);
    ``callback`` sees each iteration's z and x."""
    for k, rho in enumerate(steps(list(rhos), "split_gibbs", progress)):
        eta_z = tied_step(problem, rho, step_ratio, extra_var)
        z = tied_langevin(problem, x, x, rho, langevin_steps, eta_z, rng, extra_var)
        x = prior_step(prior, z, rho, ladder, eta, rng)
        if callback is not None:
            callback(dict(i=k, sigma=rho, z=z, x=x))
    return x
