"""Variance-preserving epsilon models as VE score models on [0, 1] data (docs/math.md §2).

A DDPM noises data in [-1, 1] as x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps. Dividing by
sqrt(abar_t) gives the VE form x0 + s eps with s = sqrt((1 - abar_t)/abar_t); so a VE input
x (in [-1, 1]) at level s enters the network as x / sqrt(1 + s^2) at the t whose s matches,
and D(x, s) = x - s eps (k-diffusion's DiscreteEpsDDPMDenoiser, EDM's VP preconditioning).

On [0, 1] data the same image is (x + 1)/2, so every sigma halves: s01 = s/2, and
    D01(x, s01) = x - s01 eps(x_vp, t),    score01 = -eps / s01,
with x_vp = (2x - 1)/sqrt(1 + (2 s01)^2).
"""
from __future__ import annotations

import numpy as np
import torch

from qcsbench.errors import ConfigError
from qcsbench.priors.base import broadcast_sigma, overridden_ladder
from qcsbench.priors.network import NetworkPrior


def linear_alphas_cumprod(num_timesteps=1000, beta_start=1e-4, beta_end=0.02):
    """The DDPM / ADM 'linear' schedule (guided-diffusion scales the ends by 1000/T)."""
    scale = 1000 / num_timesteps
    betas = np.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=np.float64)
    return torch.from_numpy(np.cumprod(1.0 - betas))


def vp_sigmas(alphas_cumprod) -> torch.Tensor:
    """s_t = sqrt((1 - abar_t)/abar_t) on [-1, 1] data, increasing in t."""
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    return ((1 - abar) / abar).sqrt()


def ladder_for(train_sigmas01: torch.Tensor, sigma_max=None, sigma_min=None, num_levels=None) -> torch.Tensor:
    """The model's own trained levels (descending) by default, else geometric between the ends."""
    own = train_sigmas01.flip(0).clone()  # trained ascending in t
    return overridden_ladder(own, sigma_max, sigma_min, num_levels or None)


PREDICTIONS = ("epsilon", "sample", "v_prediction")


class VPEpsilonPrior(NetworkPrior):
    """Subclasses give ``_model_output(x_vp, t)`` (the network's first C channels)."""

    def __init__(self, net, shape, alphas_cumprod, sigmas=None, prediction="epsilon", autocast="none",
                 compile=False):
        if prediction not in PREDICTIONS:
            raise ConfigError(f"prior.prediction={prediction} is not supported: use one of {', '.join(PREDICTIONS)}.")
        self.train_sigmas = vp_sigmas(alphas_cumprod)  # [-1, 1] scale, index t
        super().__init__(net, shape, sigmas if sigmas is not None else ladder_for(self.train_sigmas / 2),
                         autocast, compile)
        self.prediction = prediction

    def _keep_ladder_on(self, device):
        super()._keep_ladder_on(device)
        self.log_train_sigmas = self.train_sigmas.to(device).log()  # increasing in t

    def timestep(self, sigma_c: torch.Tensor) -> torch.Tensor:
        """The (fractional) t whose sigma is sigma_c (float64, shape (B,)): linear interpolation
        in log sigma, clamped to the trained range (as numpy.interp)."""
        log_s = self.log_train_sigmas
        query = sigma_c.log().clamp(log_s[0], log_s[-1])
        upper = torch.searchsorted(log_s, query).clamp(1, len(log_s) - 1)
        below, above = log_s[upper - 1], log_s[upper]
        return (upper - 1) + (query - below) / (above - below)

    def epsilon(self, x01, sigma01: torch.Tensor):
        """The network's noise prediction for images x01 on [0, 1] at levels sigma01 (B,)."""
        s = 2 * sigma01  # (B,), float64
        abar = 1 / (1 + s * s)  # the abar of the (fractional) level
        x_vp = (2 * x01 - 1) * broadcast_sigma(abar.sqrt(), x01)
        out = self._model_output(x_vp, self.timestep(s).float())
        if self.prediction == "epsilon":
            return out
        root_abar, root_rest = broadcast_sigma(abar.sqrt(), x_vp), broadcast_sigma((1 - abar).sqrt(), x_vp)
        if self.prediction == "sample":
            return (x_vp - root_abar * out) / root_rest
        return root_abar * out + root_rest * x_vp  # v = sqrt(abar) eps - sqrt(1 - abar) x0

    def _score(self, x, sigma):
        return -self.epsilon(x, sigma) / broadcast_sigma(sigma, x)

    def _model_output(self, x_vp, t):
        raise NotImplementedError
