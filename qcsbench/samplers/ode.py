"""The probability-flow ODE of a VE prior, integrated deterministically in sigma, down or up.

In VE form (x_sigma = x_0 + sigma eps) the probability-flow ODE is

    dx/dsigma = -sigma s(x, sigma) = (x - D(x, sigma)) / sigma                 (docs/math.md §6)

and DDIM's deterministic step is its exact solution with D held fixed over the step:

    x' = D + (sigma' / sigma) (x - D).

The same step with sigma' > sigma is DDIM inversion (it runs the ODE up), and sigma' = 0 gives D.
Order 2 keeps one denoiser call per step but extrapolates D linearly in lambda = -log sigma from
the previous step's value (the two-step multistep method DPM-Solver++(2M), VE form); its error
falls as h^2 instead of h. Levels may be floats or one per image (tensors of shape (B,)).
"""
from __future__ import annotations

import math

import torch

from qcsbench.priors.base import broadcast_sigma
from qcsbench.progress import steps

ORDERS = (1, 2)


def ode_step(prior, x, sigma, sigma_next, denoised=None):
    """One DDIM step from sigma to sigma_next (either direction); ``denoised`` stands in for
    D(x, sigma) where the caller has it (or an extrapolation of it)."""
    d = prior.denoise(x, sigma) if denoised is None else denoised
    return d + broadcast_sigma(sigma_next, x) / broadcast_sigma(sigma, x) * (x - d)


def _log_ratio(sigma, sigma_next, x):
    """h = lambda' - lambda = log(sigma / sigma_next), a float or (B, 1, ..., 1)."""
    ratio = broadcast_sigma(sigma, x) / broadcast_sigma(sigma_next, x)
    return torch.log(ratio) if torch.is_tensor(ratio) else math.log(ratio)


def _half_ratio(h, h_before):
    """h / (2 h_before), 0 where the step before did not move (an image whose levels coincide)."""
    if not torch.is_tensor(h_before):
        return h / (2 * h_before) if h_before != 0 else 0.0
    return torch.where(h_before == 0, 0.0, h / (2 * h_before).masked_fill(h_before == 0, 1.0))


def _is_zero(sigma) -> bool:
    """Whether a level is the number 0. Per-image levels (tensors) are positive: asking the device
    would make the host wait for every queued step."""
    return not torch.is_tensor(sigma) and sigma == 0


@torch.no_grad()
def ode_path(prior, x, sigmas, order=1, progress=False, name="ode"):
    """Integrate the ODE from x at sigmas[0] through sigmas[1], ... to sigmas[-1]: one denoiser
    call per step (len(sigmas) - 1). A last level of 0 (a number) returns D at the one before. Order 2 starts
    with a first-order step (it has no previous value yet)."""
    previous = None  # (D, h) of the step before, for order 2
    last = len(sigmas) - 2  # only the last level may be 0
    for i in steps(range(len(sigmas) - 1), name, progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = prior.denoise(x, sigma)
        if i == last and _is_zero(sigma_next):
            return d
        h = _log_ratio(sigma, sigma_next, x)
        used = d
        if order == 2 and previous is not None:
            d_before, h_before = previous
            used = d + (d - d_before) * _half_ratio(h, h_before)  # (1 + 1/(2r)) D_i - D_{i-1}/(2r), r = h_{i-1}/h_i
        x = ode_step(prior, x, sigma, sigma_next, denoised=used)
        previous = (d, h)
    return x
