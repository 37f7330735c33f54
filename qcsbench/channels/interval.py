"""The Gaussian probability of a bin, log P = log[Phi(b) - Phi(a)], and its derivative, stably.

For a measurement z + n, n ~ N(0, s^2), that fell in the bin [l, u), a = (l - z)/s and
b = (u - z)/s. Everything is evaluated in log space so that a bin 10 or 40 standard
deviations away still gives a finite, correct pull (docs/math.md §3); edges may be
infinite (the outer bins of a quantizer, both bins of 1 bit).
"""
from __future__ import annotations

import math

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
LN2 = math.log(2.0)
SQRT_2_OVER_PI, SQRT_HALF = math.sqrt(2 / math.pi), math.sqrt(0.5)


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


def half_line_grad(k: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """d/dk log Phi(k) / s = phi(k) / (s Phi(k)) = sqrt(2/pi) / (s erfcx(-k / sqrt 2)), the pull of
    a one-sided bin at k = side (z - edge) / s, times side. The scaled complementary error function
    keeps the ratio without forming either tail (finite 40 standard deviations out, 0 far inside
    the bin) in a quarter of the operations of interval_grad, whose log-space difference only a
    two-edged bin needs."""
    return SQRT_2_OVER_PI / (s * torch.special.erfcx(k * -SQRT_HALF))


def interval_grad_reference(a, b, s, one_bit: bool):
    """The reference code's formula: P evaluated directly and clamped below at 1e-6
    (and above at 1 - 1e-6 for 1 bit). Far from its bin a measurement's pull then
    stops growing and falls to zero: kept only to reproduce published numbers."""
    p = torch.special.ndtr(b) - torch.special.ndtr(a)
    p = p.clamp(1e-6, 1 - 1e-6) if one_bit else p.clamp_min(1e-6)
    num = torch.exp(log_normal_pdf(a)) - torch.exp(log_normal_pdf(b))
    return num / (s * p)


def truncated_normal_moments_reference(mean, var, lower, upper, floor: float = 1e-6):
    """The QCS-SGM+ reference code's moments of N(mean, var) on [lower, upper): the formulas of
    truncated_normal_moments with P = Phi(b) - Phi(a) evaluated directly and clipped to
    [floor, 1 - floor], in the input's dtype, and the variance left unclamped. Far from its
    bin a measurement's moments are then wrong (the variance can exceed var or turn
    negative; EP's variance average skips the entries <= 0, as the reference does): kept only
    to reproduce published numbers."""
    s = var.sqrt()
    a, b = (lower - mean) / s, (upper - mean) / s
    flip = a > -b  # upper tail: Phi(-a) - Phi(-b) keeps the digits 1 - Phi(a) would lose
    p = torch.where(flip, torch.special.ndtr(-a) - torch.special.ndtr(-b),
                    torch.special.ndtr(b) - torch.special.ndtr(a)).clamp(floor, 1 - floor)
    pdf_a, pdf_b = torch.exp(log_normal_pdf(a)), torch.exp(log_normal_pdf(b))
    ratio = (pdf_a - pdf_b) / p
    # t phi(t) is 0 at an infinite edge (the reference's edges of +-1e20 delta give the same)
    edges = torch.where(torch.isinf(a), 0.0, a * pdf_a) - torch.where(torch.isinf(b), 0.0, b * pdf_b)
    return mean + s * ratio, var * (1.0 + edges / p - ratio * ratio)


def truncated_normal_moments(mean: torch.Tensor, var: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor):
    """Mean and variance of N(mean, var) restricted to [lower, upper) (edges may be infinite).

    With a = (l - mean)/s, b = (u - mean)/s and P = Phi(b) - Phi(a):
        mean + s (phi(a) - phi(b)) / P,     var [1 + (a phi(a) - b phi(b)) / P - ((phi(a) - phi(b)) / P)^2].
    The ratios are formed in log space (a bin 30 standard deviations out still has finite
    ratios), and the whole computation runs in float64: the variance is a difference of
    terms of size a^2 whose result is of size 1/a^2 in a far one-sided tail, which float32
    cannot resolve past a few standard deviations. Truncating a normal never increases
    its variance, so rounding is clamped to [0, var].
    """
    dtype = torch.promote_types(mean.dtype, var.dtype)
    mean, var, lower, upper = (t.double() for t in torch.broadcast_tensors(mean, var, lower, upper))
    s = var.sqrt()
    a, b = (lower - mean) / s, (upper - mean) / s
    log_p = log_interval_prob(a, b)
    sign, log_num = log_pdf_difference(a, b)
    ratio = sign * torch.exp(log_num - log_p)  # (phi(a) - phi(b)) / P
    # t phi(t) / P, which is 0 at an infinite edge (where the product would read inf * 0)
    edge_a = torch.where(torch.isinf(a), 0.0, a * torch.exp(log_normal_pdf(a) - log_p))
    edge_b = torch.where(torch.isinf(b), 0.0, b * torch.exp(log_normal_pdf(b) - log_p))
    shrink = (1.0 + edge_a - edge_b - ratio * ratio).clamp(0.0, 1.0)
    # A bin much narrower than s (16 bits at a high noise level): the terms above are of size a^2 and
    # their sum of size (b - a)^2 / 12, lost to rounding even in float64. Across such a bin,
    # t = m + u with |u| <= h, the density exp(-m u - u^2 / 2) is an exponential to a relative O(h^2).
    # That form errs by a relative ~h^2, the difference above by ~1e-13 (1 + m^2) / h^2: take the better.
    half, mid = (b - a) / 2, (a + b) / 2
    narrow = half < 1e-3 * (1 + mid * mid) ** 0.25  # false for an infinite edge
    shrink = torch.where(narrow, half * half * exponential_variance(mid * half), shrink)
    return (mean + s * ratio).to(dtype), (var * shrink).to(dtype)


def exponential_variance(k: torch.Tensor) -> torch.Tensor:
    """Variance of u on [-1, 1] with density proportional to exp(-k u): 1/k^2 - 1/sinh(k)^2,
    by its series 1/3 - k^2/15 + 2 k^4/189 near 0, where the difference cancels."""
    k = k.abs()
    small = k < 0.05
    safe = torch.where(small, 1.0, k)
    direct = 1 / safe**2 - 1 / torch.sinh(safe) ** 2
    k2 = k * k
    return torch.where(small, 1 / 3 - k2 / 15 + 2 * k2 * k2 / 189, direct)


def one_sided_moments(mean: torch.Tensor, var: torch.Tensor, edge: torch.Tensor, side: torch.Tensor):
    """truncated_normal_moments for the one-sided bin [edge, inf) (side = +1) or (-inf, edge) (side = -1),
    with fewer operations (1 bit is the hot path of EP): with k = side (mean - edge) / s and the
    Mills ratio r = phi(k) / Phi(k), the mean is mean + side s r and the variance var (1 - r (k + r))."""
    dtype = torch.promote_types(mean.dtype, var.dtype)
    mean, var, edge, side = (t.double() for t in (mean, var, edge, side))
    s = var.sqrt()
    k = side * (mean - edge) / s
    r = torch.exp(log_normal_pdf(k) - torch.special.log_ndtr(k))
    shrink = (1.0 - r * (k + r)).clamp(0.0, 1.0)
    return (mean + side * s * r).to(dtype), (var * shrink).to(dtype)
