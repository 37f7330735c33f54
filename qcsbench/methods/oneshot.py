"""OneShot (docs/math.md §6): the back-projection v = A^T y of the dequantized measurements,
scaled to a typical image's norm and denoised by the prior from a matched noise level, as
SIM-DMIS initialises.

For A with independent rows, v = sum_m y_m a_m is a multiple of x plus roughly white noise of
energy e = sum_m y_m^2 ||a_m||^2 (the squares of the terms; the cross terms carry the signal),
so the signal's share of ||v||^2 is s = ||v||^2 - e. With c = r / sqrt(s) and r = pixel_rms sqrt(N),
c v ~ x + sigma* eps with sigma* = c sqrt(e / N); then x_hat = D(c v, sigma*). No knowledge of the
channel is used, so it serves every quantizer. NFE = 1.
"""
from __future__ import annotations

import math

import torch

from qcsbench.methods.base import Method
from qcsbench.problem import Recovery
from qcsbench.progress import steps
from qcsbench.settings import boolean, number, settings


def matched_back_projection(problem, y, pixel_rms):
    """(c A^T y, sigma*) per image; sigma* has shape (B,)."""
    op = problem.operator
    v = op.adjoint(y)
    energy = (v.reshape(v.shape[0], -1) ** 2).sum(1)
    noise = (y**2 * op.row_norms_sq).sum(1)
    signal = (energy - noise).clamp_min(1e-3 * energy)  # a measurement with no signal in it: huge sigma*
    c = pixel_rms * math.sqrt(op.n) / signal.sqrt()
    return c.view(-1, *[1] * (v.dim() - 1)) * v, c * (noise / op.n).sqrt()


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
