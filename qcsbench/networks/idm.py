"""IDM-style few-step learned recovery for quantized CS (docs/math.md §10).

A pretrained score UNet's few-step deterministic sampler, unrolled and fine-tuned end to end
(Chen et al., "Invertible Diffusion Models for Compressed Sensing"). Each of the T steps:
    d   = D(x_t, sigma_t)                        the UNet, fed the measurements through injectors
    eps = (x_t - d) / sigma_t                    the noise it implies
    x0  = d - gamma_t A^T (A A^T)^+ (A d - z*)   data consistency, z* = E[z | y] (or y: linear)
    x_{t-1} = x0 + sigma_{t-1} eps               VE DDIM move (sigma_0 = 0: the output is x0)
from x_T = s * (the matched back-projection of y). sigma_t, gamma_t, the prior spread of A d
behind z* and s are learned with the UNet and the injectors. The injectors' last convolutions
start at zero, so the untrained network is exactly the plain sampler it is built from.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from qcsbench.errors import ConfigError
from qcsbench.learned.consistency import pseudo_inverse_step, quantized_target
from qcsbench.back_projection import matched_back_projection
from qcsbench.networks.score_unet import ScoreUNet, SpecOnUNet, denoise_centered
from qcsbench.progress import steps as progress_steps

CONSISTENCY = ("quantized", "linear")


class Injector(nn.Module):
    """One block's measurement injection: the block's features read as an image u, then
    [u, A^T A u, back-projection] mixed back into a feature update (zero at initialisation)."""

    def __init__(self, channels: int, image_channels: int):
        super().__init__()
        self.to_image = nn.Conv2d(channels, image_channels, 1)
        self.mix = nn.Conv2d(3 * image_channels, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h, normal, v):
        u = F.interpolate(self.to_image(h), size=v.shape[-2:], mode="bilinear", align_corners=False)
        g = F.adaptive_avg_pool2d(torch.cat([u, normal(u), v], dim=1), h.shape[-2:])
        return self.out(F.silu(self.mix(g)))


class IDMNet(SpecOnUNet, nn.Module):
    """The unrolled network. ``forward(problem)`` gives x_hat on the [0, 1] image scale."""

    def __init__(self, unet: ScoreUNet, steps: int = 3, sigma_start: float = 1.0, sigma_end: float = 0.05,
                 consistency: str = "quantized", inject: bool = True, train_unet: bool = True,
                 checkpointing: bool = True, pixel_rms: float = 0.31):
        super().__init__()
        check_settings(steps, sigma_start, sigma_end, consistency, pixel_rms)
        self.settings = dict(steps=int(steps), sigma_start=float(sigma_start), sigma_end=float(sigma_end),
                             consistency=consistency, inject=bool(inject), train_unet=bool(train_unet),
                             checkpointing=bool(checkpointing), pixel_rms=float(pixel_rms))
        self.unet = unet
        self.unet.requires_grad_(bool(train_unet))
        self.pixel_rms, self.consistency, self.checkpointing = float(pixel_rms), consistency, bool(checkpointing)
        sigmas = torch.exp(torch.linspace(math.log(sigma_start), math.log(sigma_end), int(steps)))
        self.log_sigmas = nn.Parameter(sigmas.log())
        self.dc_steps = nn.Parameter(torch.ones(int(steps)))
        # prior spread of each pixel of d around the truth, sets var(A d - z) behind z*
        self.log_spread = nn.Parameter((sigmas / 2).log())
        self.input_scale = nn.Parameter(torch.ones(()))
        image_channels = unet.config["in_channels"]
        self.injectors = nn.ModuleList(
            nn.ModuleList(Injector(c, image_channels) for c in unet.block_channels()) for _ in range(int(steps))
        ) if inject else None

    def sigmas(self) -> torch.Tensor:
        return self.log_sigmas.exp()

    def start(self, problem) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_T, v): the learned scale times the matched back-projection v of the dequantized y."""
        v, _ = matched_back_projection(problem, problem.channel.dequantize(problem.measurement), self.pixel_rms)
        return self.input_scale * v, v

    def consistent(self, problem, d: torch.Tensor, t: int) -> torch.Tensor:
        op = problem.operator
        if self.consistency == "linear":  # IDM's own step: y taken as if it were A x
            target = problem.channel.dequantize(problem.measurement)
        else:
            var_z = (self.log_spread[t].exp() ** 2) * op.row_norms_sq.mean()
            target = quantized_target(problem.channel, problem.measurement, op.forward(d), var_z)
        return pseudo_inverse_step(op, d, target, self.dc_steps[t])

    def step(self, problem, x: torch.Tensor, v: torch.Tensor, t: int):
        """One unrolled step from x_t: (x_{t-1}, x0)."""
        sigmas = self.sigmas()
        sigma = sigmas[t]
        inject = None
        if self.injectors is not None:
            op = problem.operator
            scale = float(op.row_norms_sq.sum()) / op.n  # mean eigenvalue of A^T A: keeps A^T A u at u's scale
            normal = lambda u: op.adjoint(op.forward(u)) / scale  # noqa: E731
            inject = lambda k, h: self.injectors[t][k](h, normal, v)  # noqa: E731
        sigma_b = sigma.expand(x.shape[0])
        d = (denoise_centered(self.unet, 2 * x - 1, 2 * sigma_b, inject) + 1) / 2
        eps = (x - d) / sigma
        x0 = self.consistent(problem, d, t)
        following = sigmas[t + 1] if t + 1 < len(sigmas) else torch.zeros_like(sigma)
        return x0 + following * eps, x0

    def forward(self, problem, progress: bool = False) -> torch.Tensor:
        x, v = self.start(problem)
        x0 = x
        for t in progress_steps(range(len(self.log_sigmas)), "idm", progress):
            if self.checkpointing and torch.is_grad_enabled():
                x, x0 = grad_checkpoint(self.step, problem, x, v, t, use_reentrant=False)
            else:
                x, x0 = self.step(problem, x, v, t)
        return x0

    def loss(self, problem, x: torch.Tensor, noise=None) -> torch.Tensor:
        """IDM's training loss: the mean absolute error of the recovery (deterministic: no noise used)."""
        return (self(problem) - x).abs().mean()


def check_settings(steps, sigma_start, sigma_end, consistency, pixel_rms) -> None:
    if int(steps) < 1:
        raise ConfigError(f"learner.steps={steps} is not allowed: use 1 or more unrolled steps.")
    if not sigma_start >= sigma_end > 0:
        raise ConfigError(f"learner.sigma_start={sigma_start}, sigma_end={sigma_end} is not allowed: "
                          "use sigma_start >= sigma_end > 0.")
    if consistency not in CONSISTENCY:
        raise ConfigError(f"learner.consistency={consistency} is not allowed: use one of {', '.join(CONSISTENCY)}.")
    if not pixel_rms > 0:
        raise ConfigError(f"learner.pixel_rms={pixel_rms} is not allowed: use pixel_rms > 0.")
