"""The prior interface: a VE score s(x, sigma) = grad log p_sigma(x) on [0, 1] data.

x_sigma = x_0 + sigma * eps; the denoiser is Tweedie's D(x, sigma) = x + sigma^2 s(x, sigma).
Every model family is adapted to this one interface (DESIGN.md).
"""
from __future__ import annotations

import math

import torch


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int) -> torch.Tensor:
    """beta_1 > ... > beta_L, geometric (the NCSN ladder)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), int(num_levels), dtype=torch.float64))


class Prior:
    shape: tuple
    sigmas: torch.Tensor  # the preferred noise ladder, descending, float64
    name = "prior"

    def describe(self) -> dict:
        """The name, image shape and noise ladder this prior runs with."""
        return dict(name=self.name, shape=list(self.shape), sigma_max=float(self.sigmas[0]),
                    sigma_min=float(self.sigmas[-1]), num_levels=len(self.sigmas))

    def score(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        raise NotImplementedError

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return x + sigma**2 * self.score(x, sigma)

    def to(self, device=None, dtype=None) -> "Prior":
        raise NotImplementedError
