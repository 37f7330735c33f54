"""RestoreGrad-style conditional diffusion with a jointly learned prior (docs/math.md §11).

A conditional denoiser D(x, sigma, s, c) on our VE convention, where the noise is shaped per
pixel, x = x0 + sigma * s * xi, and c is a learned scale of the matched back-projection of y.
The shape s comes from a Prior Net p(eps | y) = N(0, sigma^2 diag(s_p(c))^2) at sampling, and in
training from a Posterior Net q(eps | x0, y) = N(0, sigma^2 diag(s_q(x0, c))^2), learned jointly
through the objective of docs/math.md §11. ``prior_kind`` picks the ablations: identity (s = 1, a
plain conditional diffusion model) and handmade (a PriorGrad-style s from the back-projection's
local energy, nothing learned about it).

The denoiser is the pretrained score UNet, EDM-preconditioned per pixel with sigma * s, with the
condition [c, s] injected into every block through output convolutions that start at zero: with
s = 1 the untrained model is the prior's unconditional denoiser.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from qcsbench.errors import ConfigError
from qcsbench.back_projection import matched_back_projection
from qcsbench.networks.score_unet import ScoreUNet, SpecOnUNet
from qcsbench.priors.base import geometric_sigmas
from qcsbench.progress import steps as progress_steps
from qcsbench.randomness import as_stream

PRIOR_KINDS = ("learned", "identity", "handmade")


def gaussian_kl(s_q: torch.Tensor, s_p: torch.Tensor) -> torch.Tensor:
    """KL(N(0, s_q^2) || N(0, s_p^2)) per entry: (r - 1 - log r) / 2 with r = s_q^2 / s_p^2."""
    r = (s_q / s_p) ** 2
    return 0.5 * (r - 1 - torch.log(r))


def restoregrad_terms(x0, denoised, s_q, s_p, sigma, sigma_data: float) -> dict:
    """The three terms of the objective (docs/math.md §11), each a per-image mean over pixels, on
    [-1, 1] data: the denoising error at the draw's level, EDM-weighted by the image's sigma (the
    same weight at every pixel: a per-pixel weight 1/(sigma s)^2 rewards a wider spread everywhere);
    the KL from posterior to prior; and ||x0||^2 in the posterior's metric, which keeps s_q from
    collapsing to zero."""
    sigma = sigma.view(-1, *[1] * (x0.dim() - 1))
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    diffusion = ((denoised - x0) / c_out) ** 2
    return dict(diffusion=diffusion.flatten(1).mean(1), kl=gaussian_kl(s_q, s_p).flatten(1).mean(1),
                collapse=(x0 / s_q).pow(2).flatten(1).mean(1))


class SpreadNet(nn.Module):
    """A small CNN giving a per-pixel standard deviation in [lo, hi], 1 at initialisation
    (the Prior Net on the condition, the Posterior Net on [x0, condition])."""

    def __init__(self, in_channels: int, out_channels: int, lo: float, hi: float, width: int = 32):
        super().__init__()
        self.lo, self.hi = lo, hi
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, out_channels, 3, padding=1))
        last = self.body[-1]
        nn.init.zeros_(last.weight)
        nn.init.constant_(last.bias, math.log((1 - lo) / (hi - 1)))  # sigmoid^-1 of the point where s = 1

    def forward(self, inputs):
        return self.lo + (self.hi - self.lo) * torch.sigmoid(self.body(inputs))


class ConditionInjector(nn.Module):
    """[c, log s] resized to a block's resolution, mixed into a feature update (zero at initialisation)."""

    def __init__(self, channels: int, image_channels: int):
        super().__init__()
        self.mix = nn.Conv2d(2 * image_channels, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h, condition):
        g = F.adaptive_avg_pool2d(condition, h.shape[-2:])
        return self.out(F.silu(self.mix(g)))


def handmade_spread(v: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """PriorGrad-style shape from the data alone: the back-projection's local energy (3 x 3) over its
    mean energy, as a standard deviation, clamped to [lo, hi]."""
    local = F.avg_pool2d(v**2, 3, stride=1, padding=1, count_include_pad=False)
    mean = v.pow(2).flatten(1).mean(1).view(-1, *[1] * (v.dim() - 1))
    return (local / mean.clamp_min(1e-12)).sqrt().clamp(lo, hi)


class RestoreGradNet(SpecOnUNet, nn.Module):
    """The conditional model. ``loss(problem, x)`` trains it; ``forward(problem, steps, rng)`` samples."""

    def __init__(self, unet: ScoreUNet, prior_kind: str = "learned", sigma_max: float = 50.0,
                 sigma_min: float = 0.01, spread_min: float = 0.1, spread_max: float = 2.0, eta: float = 10.0,
                 lam: float = 0.01, sampling_steps: int = 20, pixel_rms: float = 0.31):
        super().__init__()
        check_settings(prior_kind, sigma_max, sigma_min, spread_min, spread_max, sampling_steps)
        self.settings = dict(prior_kind=prior_kind, sigma_max=float(sigma_max), sigma_min=float(sigma_min),
                             spread_min=float(spread_min), spread_max=float(spread_max), eta=float(eta),
                             lam=float(lam), sampling_steps=int(sampling_steps), pixel_rms=float(pixel_rms))
        self.unet, self.prior_kind = unet, prior_kind
        for key, value in self.settings.items():
            if key != "prior_kind":
                setattr(self, key, value)
        c = unet.config["in_channels"]
        self.condition_scale = nn.Parameter(torch.ones(()))
        self.injectors = nn.ModuleList(ConditionInjector(ch, c) for ch in unet.block_channels())
        if prior_kind == "learned":
            self.prior_net = SpreadNet(c, c, spread_min, spread_max)
            self.posterior_net = SpreadNet(2 * c, c, spread_min, spread_max)

    def condition(self, problem) -> torch.Tensor:
        """c: the learned scale of the matched back-projection, on the [-1, 1] scale."""
        v, _ = matched_back_projection(problem, problem.channel.dequantize(problem.measurement), self.pixel_rms)
        return self.condition_scale * (2 * v - 1)

    def prior_spread(self, c: torch.Tensor) -> torch.Tensor:
        if self.prior_kind == "learned":
            return self.prior_net(c)
        if self.prior_kind == "handmade":
            return handmade_spread(c, self.spread_min, self.spread_max)
        return torch.ones_like(c)

    def posterior_spread(self, x0: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.prior_kind == "learned":
            return self.posterior_net(torch.cat([x0, c], dim=1))
        return self.prior_spread(c)  # nothing learned about the shape: the posterior is the prior

    def denoise(self, x, sigma, spread, c) -> torch.Tensor:
        """D(x, sigma, s, c) on [-1, 1]: EDM preconditioning per pixel at the level sigma * s; the
        network's noise input is the image's rms level."""
        sd = self.unet.sigma_data
        level = sigma.view(-1, 1, 1, 1) * spread
        var = level**2 + sd**2
        c_noise = level.flatten(1).pow(2).mean(1).sqrt().log() / 4
        condition = torch.cat([c, spread.log()], dim=1)
        features = self.unet(x / var.sqrt(), c_noise, lambda k, h: self.injectors[k](h, condition))
        return sd**2 / var * x + level * sd / var.sqrt() * features

    def loss_terms(self, problem, x: torch.Tensor, noise) -> dict:
        """Per-image terms at a log-uniform level and a posterior draw; ``noise`` a torch.Generator."""
        x0 = 2 * x - 1
        c = self.condition(problem)
        s_q, s_p = self.posterior_spread(x0, c), self.prior_spread(c)
        u = torch.rand(x.shape[0], generator=noise, device=x.device)
        # the training ladder on the [-1, 1] scale: twice the [0, 1] one
        sigma = 2 * torch.exp(math.log(self.sigma_min) + u * (math.log(self.sigma_max) - math.log(self.sigma_min)))
        xi = torch.randn(x.shape, generator=noise, device=x.device)
        noisy = x0 + sigma.view(-1, 1, 1, 1) * s_q * xi
        # the denoiser is told the prior's shape, as at sampling: told s_q, which the Posterior Net
        # computes from x0, it would read the answer from it and fail when s_p takes its place
        return restoregrad_terms(x0, self.denoise(noisy, sigma, s_p, c), s_q, s_p, sigma, self.unet.sigma_data)

    def loss(self, problem, x: torch.Tensor, noise=None) -> torch.Tensor:
        if noise is None:
            noise = torch.Generator(device=x.device).manual_seed(0)
        terms = self.loss_terms(problem, x, noise)
        total = terms["diffusion"]
        if self.prior_kind == "learned":  # the other two are constants when the shape is not learned
            total = total + self.eta * terms["kl"] + self.lam * terms["collapse"]
        return total.mean()

    def forward(self, problem, steps: int | None = None, rng=None, progress: bool = False) -> torch.Tensor:
        """Ancestral sampling from the learned prior: x = sigma_max s_p xi, then ``steps`` levels of
        x <- D + sigma_down (x - D) / sigma + sigma_up s_p xi (every noise drawn from the prior),
        returning the last D on [0, 1]. steps = 0 returns the prior draw itself (on [-1, 1])."""
        steps = self.sampling_steps if steps is None else int(steps)
        batch = problem.batch_size
        stream = as_stream(0 if rng is None else rng, batch, problem.measurement.y.device)
        c = self.condition(problem)
        spread = self.prior_spread(c)
        shape = tuple(c.shape[1:])
        draw = lambda: stream.randn(*shape).to(c.device, c.dtype)  # noqa: E731
        x = 2 * self.sigma_max * spread * draw()
        if steps == 0:
            return x
        sigmas = 2 * geometric_sigmas(self.sigma_max, self.sigma_min, steps).to(c.device, c.dtype)
        for i in progress_steps(range(steps), "restoregrad", progress):
            sigma = sigmas[i]
            d = self.denoise(x, sigma.expand(batch), spread, c)
            if i + 1 == steps:
                return (d + 1) / 2
            following = sigmas[i + 1]
            up = following * (1 - (following / sigma) ** 2).sqrt()
            down = (following**2 - up**2).sqrt()
            x = d + down * (x - d) / sigma + up * spread * draw()


def check_settings(prior_kind, sigma_max, sigma_min, spread_min, spread_max, sampling_steps) -> None:
    if prior_kind not in PRIOR_KINDS:
        raise ConfigError(f"learner.prior_kind={prior_kind} is not allowed: use one of {', '.join(PRIOR_KINDS)}.")
    if not sigma_max > sigma_min > 0:
        raise ConfigError(f"learner.sigma_max={sigma_max}, sigma_min={sigma_min} is not allowed: "
                          "use sigma_max > sigma_min > 0.")
    if not 0 < spread_min < 1 < spread_max:
        raise ConfigError(f"learner.spread_min={spread_min}, spread_max={spread_max} is not allowed: "
                          "use 0 < spread_min < 1 < spread_max (the spread starts at 1).")
    if int(sampling_steps) < 1:
        raise ConfigError(f"learner.sampling_steps={sampling_steps} is not allowed: use 1 or more.")
