"""SIM-DMIS (Tang, Chen, Xue & Liu, ICML 2025; docs/math.md §6): the single-index-model view of
quantized sensing. The back-projection Aᵀy is a scaled copy of x plus roughly white noise, so,
scaled to a typical image and given its matched noise level σ* (qcsbench.back_projection, as
OneShot starts), it is treated as a point x_σ* of the diffusion; the probability-flow ODE runs it
up to the top of the ladder (inversion) and a full deterministic pass brings it down again. The
channel's likelihood is never used: the same steps serve 1 bit, Q bits, the logistic channel and
linear data. Deterministic given y (a point estimate); NFE = inversion_steps + num_levels."""
from __future__ import annotations

import torch

from qcsbench.back_projection import matched_back_projection
from qcsbench.methods.base import Ladder, Method
from qcsbench.problem import Recovery
from qcsbench.samplers.ode import ORDERS, ode_path
from qcsbench.settings import LADDER, boolean, choice, descending_ladder, integer, number, settings


def inversion_ladder(start, top: float, steps: int):
    """steps + 1 per-image levels, geometric from each image's ``start`` (shape (B,)) up to ``top``;
    a start above the top is taken at the top (its back-projection is all noise to the prior)."""
    start = start.clamp(max=top)
    fractions = torch.linspace(0, 1, steps + 1, dtype=torch.float64, device=start.device)
    return list(torch.exp(torch.log(start)[None] + fractions[:, None] * torch.log(top / start)[None]))


@settings("method", (descending_ladder,), pixel_rms=number(0, lo_open=True), sigma_scale=number(0, lo_open=True),
          inversion_steps=integer(1), inversion_order=choice(*ORDERS), progress=boolean(), **LADDER)
class SIMDMIS(Method):
    """pixel_rms: a typical image's root-mean-square pixel value (the scale one bit cannot give,
    the paper's C'_s); sigma_scale: a factor on the matched starting level σ* (the paper's C_s);
    inversion_steps and inversion_order (1: DDIM inversion, 2: the two-step second-order method)
    of the way up from σ* to sigma_max; num_levels (the deterministic DDIM pass down, its last
    step the denoiser's estimate) and the ladder: geometric from sigma_max to sigma_min (null: the prior's)."""

    point_estimate = True  # deterministic given y: no noise is drawn on the way up or down

    def __init__(self, name="sim_dmis", pixel_rms=0.31, sigma_scale=1.5, inversion_steps=50, inversion_order=2,
                 num_levels=100, sigma_max=None, sigma_min=None, progress=True):
        self.name, self.pixel_rms, self.sigma_scale = name, float(pixel_rms), float(sigma_scale)
        self.inversion_steps, self.inversion_order = int(inversion_steps), int(inversion_order)
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.progress = progress

    @torch.no_grad()
    def _recover(self, problem, prior, rng):
        down = [float(s) for s in self.ladder.sigmas(prior)] + [0.0]
        y = problem.channel.dequantize(problem.measurement)
        x, sigma = matched_back_projection(problem, y, self.pixel_rms)
        up = inversion_ladder(self.sigma_scale * sigma, down[0], self.inversion_steps)
        x = ode_path(prior, x, up, self.inversion_order, self.progress, "sim_dmis inversion")
        x = ode_path(prior, x, down, 1, self.progress, "sim_dmis")
        return Recovery(x.clamp(0, 1), prior.nfe, dict(sigma=up[0]))
