"""OneShot (docs/math.md §6): the matched back-projection c Aᵀy of the dequantized measurements
(qcsbench.back_projection: scaled to a typical image's norm, with its noise level σ*) denoised by
the prior once, x_hat = D(c Aᵀy, σ*). No knowledge of the channel is used, so it serves every
quantizer. NFE = 1. SIM-DMIS starts from the same point.
"""
from __future__ import annotations

import torch

from qcsbench.back_projection import matched_back_projection
from qcsbench.methods.base import Method
from qcsbench.problem import Recovery
from qcsbench.progress import steps
from qcsbench.settings import boolean, number, settings


@settings("method", pixel_rms=number(0, lo_open=True), progress=boolean())
class OneShot(Method):
    """pixel_rms: the root-mean-square pixel value of a typical image (MNIST train 0.31)."""

    point_estimate = True

    def __init__(self, name="oneshot", pixel_rms=0.31, progress=True):
        self.name, self.pixel_rms, self.progress = name, float(pixel_rms), progress

    @torch.no_grad()
    def _recover(self, problem, prior, rng):
        y = problem.channel.dequantize(problem.measurement)
        x, sigma = matched_back_projection(problem, y, self.pixel_rms)
        for _ in steps(range(1), "oneshot", self.progress):  # the one denoiser call, reported like a sampler's
            out = prior.denoise(x, sigma)  # one call for the batch, each image at its own sigma*
        return Recovery(out.clamp(0, 1), prior.nfe, dict(sigma=sigma))
