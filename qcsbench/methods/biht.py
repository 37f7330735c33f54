"""Binary iterative hard thresholding (Jacques et al. 2013; docs/math.md §6) in the orthonormal
2-D DCT basis Psi:

    theta <- H_K( theta + (tau / 2) Psi A^T (y - sign(A Psi^T theta)) ),  theta_0 = 0

Only the signs of the measurements are used (the bin levels' signs for multi-bit data). No prior,
so NFE = 0. 1-bit data carry no norm: the output Psi^T theta is normalised and then scaled to
the norm pixel_rms * sqrt(N) of a typical image (MNIST train: pixel rms 0.31); its plain PSNR
depends on that guess, psnr_scaled (best scalar fit) is the fair number.
"""
from __future__ import annotations

import math

import torch

from qcsbench.methods.base import Method
from qcsbench.operators.dct import dct_matrix
from qcsbench.problem import Recovery
from qcsbench.progress import steps
from qcsbench.settings import boolean, integer, number, settings


def hard_threshold(theta, k):
    """Keep the k largest |theta| of each image, zero the rest."""
    flat = theta.reshape(theta.shape[0], -1)
    idx = flat.abs().topk(k, dim=1).indices
    out = torch.zeros_like(flat).scatter_(1, idx, flat.gather(1, idx))
    return out.view_as(theta)


@settings("method", sparsity=integer(1), iterations=integer(1), step=number(0, lo_open=True, null=True),
          pixel_rms=number(0, lo_open=True), progress=boolean())
class BIHT(Method):
    """sparsity (K), iterations, step (tau; null: 1/M; from theta_0 = 0 it only sets the scale of
    theta, which the output normalisation removes), pixel_rms (the output's scale)."""

    point_estimate = True

    def __init__(self, name="biht", sparsity=100, iterations=300, step=None, pixel_rms=0.31, progress=True):
        self.name, self.sparsity, self.iterations = name, int(sparsity), int(iterations)
        self.step, self.pixel_rms, self.progress = step, float(pixel_rms), progress

    def _recover(self, problem, prior, rng):
        op = problem.operator
        _, h, w = op.shape
        y = problem.measurement.y
        dh, dw = dct_matrix(h).to(y), dct_matrix(w).to(y)
        analysis = lambda x: dh @ x @ dw.T  # Psi x, per channel
        synthesis = lambda t: dh.T @ t @ dw  # Psi^T theta
        signs = torch.sign(problem.channel.dequantize(problem.measurement))
        tau = 1.0 / op.m if self.step is None else float(self.step)
        k = min(self.sparsity, op.n)
        theta = torch.zeros(y.shape[0], *op.shape, dtype=y.dtype, device=y.device)
        for _ in steps(range(self.iterations), "biht", self.progress):
            residual = signs - torch.sign(op.forward(synthesis(theta)))
            theta = hard_threshold(theta + tau / 2 * analysis(op.adjoint(residual)), k)
        x = synthesis(theta)
        norm = x.reshape(x.shape[0], -1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
        x = x / norm * self.pixel_rms * math.sqrt(op.n)
        return Recovery(x.clamp(0, 1), 0)
