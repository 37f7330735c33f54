"""Langevin on a variable under the channel's likelihood and a Gaussian tie to a point.

The target is

    p(z) ∝ exp(-L(z) - ||z - c||^2 / (2 tau^2)),

L the channel's negative log-likelihood (qcsbench.likelihood.data_term), c the centre and tau the
tie's width. It is the likelihood step of split Gibbs (PnP-DM, PnP-OneBit: c = x, tau = rho_k)
and DAPS's step on x0 (c = the x0 estimate of the current level). The chain is unadjusted:

    z <- z - eta [grad L(z) + (z - c) / tau^2] + sqrt(2 eta) xi,   xi ~ N(0, I)

with a step eta below 2 / (Lip(grad L) + 1 / tau^2), which ``tied_step`` gives as a fraction of it.
"""
from __future__ import annotations

import torch

from qcsbench.likelihood.data_term import nll_grad
from qcsbench.priors.base import broadcast_sigma
from qcsbench.samplers.hqs import stable_step


def tied_step(problem, tie_std, ratio: float, extra_var: float = 0.0):
    """ratio times the largest stable step 2 / (Lip(grad L) + 1 / tau^2) (``stable_step`` gives
    2 / Lip(grad L)); a tensor of shape (B,) where tie_std is one."""
    return ratio * 2.0 / (2.0 / stable_step(problem, extra_var) + 1.0 / tie_std**2)


@torch.no_grad()
def tied_langevin(problem, z, centre, tie_std, steps: int, step_size, rng, extra_var: float = 0.0):
    """``steps`` Langevin steps from z; returns z. tie_std and step_size: floats or per-image (B,)
    tensors; rng draws per-image noise (an ImageRandom); extra_var widens the likelihood."""
    tie = broadcast_sigma(tie_std, z)
    eta = broadcast_sigma(step_size, z)
    noise = (2 * eta) ** 0.5
    for _ in range(steps):
        drift = nll_grad(problem, z, extra_var) + (z - centre) / tie**2
        z = z - eta * drift + noise * rng.randn(*z.shape[1:], dtype=z.dtype)
    return z
