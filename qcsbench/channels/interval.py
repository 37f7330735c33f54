"""The Gaussian probability of a bin, log P = log[Phi(b) - Phi(a)], and its derivative, stably.

For a measurement z + n, n ~ N(0, s^2), that fell in the bin [l, u), a = (l - z)/s and
b = (u - z)/s. Everything is evaluated in log space so that a bin 10 or 40 standard
deviations away still gives a finite, correct pull (MATH.md section 3); edges may be
infinite (the outer bins of a quantizer, both bins of 1 bit).
"""
from __future__ import annotations

import math

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
LN2 = math.log(2.0)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0 without cancellation (Maechler's two branches)."""
    return torch.where(x > -LN2, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_normal_pdf(t: torch.Tensor) -> torch.Tensor:
    return -0.5 * t * t - LOG_SQRT_2PI


def log_interval_prob(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a <= b."""
    # Where the bin lies in the upper tail, use Phi(b) - Phi(a) = Phi(-a) - Phi(-b):
    # both terms are then small and their difference keeps its precision.
    flip = a > -b
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    return log_hi + log1mexp(torch.special.log_ndtr(lo) - log_hi)


def log_pdf_difference(a: torch.Tensor, b: torch.Tensor):
    """(sign, log|phi(a) - phi(b)|), with log phi(a) - log phi(b) = (b - a)(b + a)/2 formed stably."""
    la, lb = log_normal_pdf(a), log_normal_pdf(b)
    gap = (b - a) * (b + a) / 2  # = la - lb, exact where the bin is narrow
    gap = torch.where(torch.isnan(gap), la - lb, gap)
    log_abs = torch.maximum(la, lb) + log1mexp(-gap.abs())
    return torch.sign(gap), log_abs


def interval_grad(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor, log_p: torch.Tensor | None = None):
    """d/dz log P for a = (l - z)/s, b = (u - z)/s: (phi(a) - phi(b)) / (s P)."""
    if log_p is None:
        log_p = log_interval_prob(a, b)
    sign, log_num = log_pdf_difference(a, b)
    return sign * torch.exp(log_num - log_p) / s


def interval_grad_reference(a, b, s, one_bit: bool):
    """The reference code's formula: P evaluated directly and clamped below at 1e-6
    (and above at 1 - 1e-6 for 1 bit). Far from its bin a measurement's pull then
    stops growing and falls to zero: kept only to reproduce published numbers."""
    p = torch.special.ndtr(b) - torch.special.ndtr(a)
    p = p.clamp(1e-6, 1 - 1e-6) if one_bit else p.clamp_min(1e-6)
    num = torch.exp(log_normal_pdf(a)) - torch.exp(log_normal_pdf(b))
    return num / (s * p)
