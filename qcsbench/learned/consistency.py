"""Data consistency for learned unrolled recovery (docs/math.md §10): move an estimate x0 to
the images whose measurements equal a target z*, x0 - gamma A^T (A A^T)^+ (A x0 - z*).

IDM's target is y itself, which is right only for y = A x. For quantized data the target
here is the posterior mean of z = A x given the bin each measurement fell in, with
z ~ N(A x0, v) a priori: the channel's truncated-normal moments, exact for Gaussian noise
before the quantizer and tending to y as the bins narrow.
"""
from __future__ import annotations

import torch


def quantized_target(channel, meas, z_hat: torch.Tensor, var_z: torch.Tensor) -> torch.Tensor:
    """E[z | y] for z ~ N(z_hat, var_z) and y = Q(z + n), n ~ N(0, noise_std^2).

    w = z + n ~ N(z_hat, var_z + s^2) restricted to its bin has mean E[w | y] (the tilted
    moments), and z given w is Gaussian with mean z_hat + var_z / (var_z + s^2) (w - z_hat)."""
    gaussian = channel.gaussian_form()  # the logistic link read as noise followed by sign bins
    noise_var = gaussian.noise_std**2
    total = var_z + noise_var
    w_mean, _ = gaussian.tilted_moments(meas, torch.zeros_like(z_hat), z_hat, total.expand_as(z_hat))
    return z_hat + var_z / total * (w_mean.to(z_hat.dtype) - z_hat)


def pseudo_inverse_step(operator, x0: torch.Tensor, target: torch.Tensor, step) -> torch.Tensor:
    """x0 - step A^T (A A^T)^+ (A x0 - target): with step 1, the nearest image to x0 whose
    measurements are the target (directions A A^T cannot see are left alone)."""
    d, _ = operator.gram_eig()
    inverse = torch.where(d > 1e-6 * d.max(), 1 / d.clamp_min(1e-30), torch.zeros_like(d)).to(x0.dtype)
    residual = operator.forward(x0) - target
    return x0 - step * operator.adjoint(operator.gram_filter(residual, inverse))
