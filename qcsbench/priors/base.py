"""The prior interface: a VE score s(x, sigma) = grad log p_sigma(x) on [0, 1] data.

x_sigma = x_0 + sigma * eps; the denoiser is Tweedie's D(x, sigma) = x + sigma^2 s(x, sigma).
Every model family is adapted to this one interface (docs/architecture.md §2, docs/math.md §2).

The contract every prior keeps (tests/test_prior_contract.py checks it family by family):
``sigma`` is a Python float (one level for the batch) or a tensor of shape (B,) (one level
per image, as k-diffusion's denoisers take it); the output has the input's shape and dtype
(the prior computes in its own precision, set by ``to``); nothing runs under no_grad, so
both are differentiable in x. Samplers that need no gradient switch autograd off themselves.
"""
from __future__ import annotations

import math

import torch


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int) -> torch.Tensor:
    """beta_1 > ... > beta_L, geometric (the NCSN ladder)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), int(num_levels), dtype=torch.float64))


def overridden_ladder(own: torch.Tensor, sigma_max=None, sigma_min=None, num_levels=None) -> torch.Tensor:
    """A model's own descending ladder unless a config sets any of sigma_max, sigma_min, num_levels;
    then the geometric ladder between the given ends, each one not given taken from ``own``."""
    if sigma_max is None and sigma_min is None and num_levels is None:
        return own
    hi = float(own[0]) if sigma_max is None else float(sigma_max)
    lo = float(own[-1]) if sigma_min is None else float(sigma_min)
    return geometric_sigmas(hi, lo, len(own) if num_levels is None else int(num_levels))


def per_image_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` as a float64 tensor of shape (B,) on x's device: a float (or a 0-d tensor) is
    repeated for every image of the batch x."""
    batch = x.shape[0]
    if not torch.is_tensor(sigma) or sigma.dim() == 0:
        return torch.full((batch,), float(sigma), dtype=torch.float64, device=x.device)
    if tuple(sigma.shape) != (batch,):
        raise ValueError(f"sigma has shape {tuple(sigma.shape)}; a batch of {batch} images takes a float or shape ({batch},)")
    return sigma.detach().to(device=x.device, dtype=torch.float64)


def broadcast_sigma(sigma, x: torch.Tensor):
    """``sigma`` ready for arithmetic with x: a float stays a float (so the one-level path is
    unchanged), a per-image tensor becomes shape (B, 1, ..., 1) in x's dtype."""
    if not torch.is_tensor(sigma):
        return float(sigma)
    return per_image_sigma(sigma, x).to(x.dtype).view(-1, *[1] * (x.dim() - 1))


class Prior:
    shape: tuple
    sigmas: torch.Tensor  # the preferred noise ladder, descending, float64
    name = "prior"

    def describe(self) -> dict:
        """The name, image shape and noise ladder this prior runs with."""
        return dict(name=self.name, shape=list(self.shape), sigma_max=float(self.sigmas[0]),
                    sigma_min=float(self.sigmas[-1]), num_levels=len(self.sigmas))

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        raise NotImplementedError

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        return x + broadcast_sigma(sigma, x) ** 2 * self.score(x, sigma)

    def to(self, device=None, dtype=None) -> "Prior":
        raise NotImplementedError
