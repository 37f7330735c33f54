"""Diffusion posterior sampling's loop (Chung et al., ICLR 2023) with the channel's likelihood,
on the VE ladder.

Ancestral step, the DDPM posterior q(x_{t-1} | x_t, x0) written for VE noise with x0 = D(x_t, sigma_t):
    mean = x0 + (sigma_{t-1}^2 / sigma_t^2)(x_t - x0),   var = sigma_{t-1}^2 (1 - sigma_{t-1}^2 / sigma_t^2)
then the guidance  x_{t-1} -= zeta grad_{x_t} G(x_t),  with G = L(A D(x_t)) (``guidance: nll``) or
G = sqrt(L(A D(x_t))) (``sqrt_nll``: for a Gaussian channel this is DPS's own step
zeta' grad ||y - A x0||, since L = ||y - A x0||^2 / (2 s^2)). The gradient goes through the
denoiser by autograd; the final step goes to sigma = 0 and returns x0 minus the guidance.
"""
from __future__ import annotations

import torch

from qcsbench.likelihood.data_term import nll, nll_surrogate
from qcsbench.progress import steps

GUIDANCES = ("nll", "sqrt_nll")


def guidance_grad(problem, prior, x, sigma, guidance="sqrt_nll"):
    """(grad_x G(x) per image, D(x, sigma)): one denoiser call, one backward pass."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        x0 = prior.denoise(x, sigma)
        z = problem.operator.forward(x0)
        surrogate = nll_surrogate(problem, z)
        (grad,) = torch.autograd.grad(surrogate, x)
    if guidance == "sqrt_nll":  # d sqrt(L) = dL / (2 sqrt(L)), per image
        value = nll(problem, x0.detach()).clamp_min(1e-12)
        grad = grad / (2 * value.sqrt()).view(-1, *[1] * (grad.dim() - 1))
    return grad, x0.detach()


@torch.no_grad()  # autograd only inside guidance_grad, through the one denoiser call
def dps(prior, x, sigmas, rng, problem, zeta=0.1, guidance="sqrt_nll", progress=True, callback=None):
    """Run the loop from x = x_T down the ladder ``sigmas`` and on to sigma = 0; returns x0.
    ``callback`` sees each level's x and the denoiser's estimate (``denoised``)."""
    sigmas = [float(s) for s in sigmas] + [0.0]
    shape = x.shape[1:]
    for i, (sigma, nxt) in enumerate(steps(list(zip(sigmas[:-1], sigmas[1:])), "dps", progress)):
        grad, x0 = guidance_grad(problem, prior, x, sigma, guidance)
        if callback is not None:
            callback(dict(i=i, sigma=sigma, x=x, denoised=x0))
        ratio = (nxt / sigma) ** 2
        x = x0 + ratio * (x - x0) + nxt * (1 - ratio) ** 0.5 * rng.randn(*shape) - zeta * grad
    return x
