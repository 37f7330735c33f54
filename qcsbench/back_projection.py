"""The back-projection Aᵀy of quantized measurements as a noisy image (docs/math.md §6, OneShot).

For A with independent rows, v = Aᵀy = Σ_m y_m a_m is a multiple of x plus roughly white noise:
the single-index-model view of quantized sensing (for Gaussian a_m and any channel whose output
correlates with a_mᵀx, E[y_m a_m] ∝ x). Its energy splits into the squares of the terms,
e = Σ_m y_m² ‖a_m‖² (the noise), and the cross terms, which carry the signal: s = ‖v‖² − e.
One bit loses ‖x‖, so the scale is set from a typical image instead: c = r / √s with
r = pixel_rms √N makes c v ≈ x + σ* ε with σ* = c √(e / N). OneShot denoises that once, SIM-DMIS
starts its ODE round trip there, and the learned methods scale their inputs by it.
"""
from __future__ import annotations

import math


def matched_back_projection(problem, y, pixel_rms):
    """(c Aᵀy, σ*) per image for measurements y (the dequantized ones: bin levels, ±1 for one bit);
    σ* has shape (B,)."""
    op = problem.operator
    v = op.adjoint(y)
    energy = (v.reshape(v.shape[0], -1) ** 2).sum(1)
    noise = (y**2 * op.row_norms_sq).sum(1)
    signal = (energy - noise).clamp_min(1e-3 * energy)  # a measurement with no signal in it: huge sigma*
    c = pixel_rms * math.sqrt(op.n) / signal.sqrt()
    return c.view(-1, *[1] * (v.dim() - 1)) * v, c * (noise / op.n).sqrt()
