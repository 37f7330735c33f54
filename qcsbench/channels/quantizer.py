"""The Q-bit uniform mid-rise quantizer (docs/math.md §1), with optional known dither."""
from __future__ import annotations

import torch

from qcsbench.channels.base import Channel, Measurement
from qcsbench.channels.interval import (half_line_grad, interval_grad, interval_grad_reference, log_interval_prob,
                                       one_sided_moments, truncated_normal_moments,
                                       truncated_normal_moments_reference)
from qcsbench.settings import boolean, choice, integer, settings

RANGES = ("image", "batch")


@settings("quantizer", bits=integer(1, 16), range=choice(*RANGES), dither=boolean(), reference_clamps=boolean())
class UniformQuantizer(Channel):
    """Step delta = (max - min) / 2^Q of the noisy measurements; code k = min(2^(Q-1), ceil(|v|/delta));
    output sign(v)(k - 1/2) delta; the outer bins are open. 1 bit is sign(v), bins [0, inf) and (-inf, 0).

    range: ``image`` takes max and min per image (a result does not depend on the batch);
    ``batch`` takes them over the whole batch, as the reference code does.
    dither: add a known uniform dither d ~ U[-delta/2, delta/2) before quantizing; the
    bins and the levels (for more than 1 bit) handed to methods are shifted back by -d.
    reference_clamps: score with the reference code's clamped probabilities instead of
    the exact log-space formula (QCS-SGM's, and inside every sweep of QCS-SGM+'s EP).
    """

    name = "uniform"
    takes_bits = True

    def __init__(self, bits: int, noise_std: float, range: str = "image", dither: bool = False,
                 reference_clamps: bool = False):
        super().__init__(noise_std)
        self.bits = bits
        self.range = range
        self.dither = bool(dither)
        self.reference_clamps = bool(reference_clamps)

    @classmethod
    def run_label(cls, bits) -> str:
        return f"{bits}bit"

    @classmethod
    def couples_batch(cls, settings: dict) -> bool:
        return settings.get("range") == "batch"

    @property
    def half_line_bins(self) -> bool:
        return self.bits == 1

    def describe(self):
        return dict(super().describe(), bits=self.bits, range=self.range, dither=self.dither,
                    reference_clamps=self.reference_clamps)

    def step(self, v: torch.Tensor) -> torch.Tensor:
        if self.range == "image":
            spread = v.amax(1, keepdim=True) - v.amin(1, keepdim=True)
        else:
            spread = (v.max() - v.min()).expand(v.shape[0], 1)
        return spread.clamp_min(torch.finfo(v.dtype).tiny) / 2**self.bits

    def measure(self, z, rng):
        v = z + self.noise_std * rng.randn(z.shape[1], dtype=z.dtype).to(z.device)
        delta = self.step(v)
        d = (rng.rand(z.shape[1], dtype=z.dtype).to(z.device) - 0.5) * delta if self.dither else torch.zeros_like(v)
        w = v + d
        top = 2 ** (self.bits - 1)
        k = torch.ceil(w.abs() / delta).clamp(1, top)
        positive = w >= 0
        sign = torch.where(positive, 1.0, -1.0).to(z.dtype)
        inf = torch.full_like(w, float("inf"))
        inner = (k - 1) * delta
        outer = torch.where(k == top, inf, k * delta)
        lower = torch.where(positive, inner, -outer) - d
        upper = torch.where(positive, outer, -inner) - d
        # The level of w = v + d, moved back by the known dither into the units of v (and of the bins):
        # the dequantized value methods use is then the centre of the bin v fell in.
        y = sign if self.bits == 1 else sign * (k - 0.5) * delta - d
        return Measurement(y, lower, upper)

    def _standardise(self, meas, z, extra_var):
        """a = (l - z)/s, b = (u - z)/s, s, all in float64. A 16-bit bin is 2^-16 of the range wide: at
        QCS-SGM's first levels (s ~ 100) float32 rounds a and b, and then log Phi(a) and log Phi(b),
        to the same number, and log P = log 0 = -inf. The edges and z are float32 numbers, so in
        float64 their differences are exact and the bin keeps its width."""
        z = z.double()
        s = self.total_std(z, extra_var)
        return (meas.lower.double() - z) / s, (meas.upper.double() - z) / s, s

    def log_likelihood(self, meas, z, extra_var=0.0):
        a, b, _ = self._standardise(meas, z, extra_var)
        return log_interval_prob(a, b).to(z.dtype)

    def grad(self, meas, z, extra_var=0.0):
        if self.reference_clamps:  # the reference code's arithmetic, in the caller's precision
            s = self.total_std(z, extra_var)
            a, b = (meas.lower - z) / s, (meas.upper - z) / s
            return interval_grad_reference(a, b, s, one_bit=self.bits == 1)
        if self.bits == 1:  # a half-line bin has one edge: side * pull at k = side (z - edge) / s, in float64
            zd = z.double()
            s = self.total_std(zd, extra_var)
            side = meas.y.double()
            edge = torch.where(meas.y > 0, meas.lower, meas.upper).double()  # 0, or -d with dither
            return (side * half_line_grad(side * (zd - edge) / s, s)).to(z.dtype)
        a, b, s = self._standardise(meas, z, extra_var)
        return interval_grad(a, b, s).to(z.dtype)

    def tilted_moments(self, meas, offset, mean, var):
        # offset + v fell in [l, u): v is the normal truncated to [l - offset, u - offset)
        if self.reference_clamps:
            return truncated_normal_moments_reference(mean, var, meas.lower - offset, meas.upper - offset)
        if self.bits == 1:  # both bins are half-lines: the same moments with a quarter of the work
            # y = +-1 is the side; the finite edge is 0, or -d with dither
            edge = torch.where(meas.y > 0, meas.lower, meas.upper) - offset
            return one_sided_moments(mean, var, edge, meas.y)
        # the edges move to float64 before the offset is taken off, for the reason _standardise gives
        lower, upper, offset = meas.lower.double(), meas.upper.double(), offset.double()
        return truncated_normal_moments(mean, var, lower - offset, upper - offset)


class GaussianNoise(Channel):
    """No quantization: y = z + n, linear compressed sensing."""

    name = "none"
    point_values = True

    @classmethod
    def run_label(cls, bits) -> str:
        return "linear"

    def measure(self, z, rng):
        y = z + self.noise_std * rng.randn(z.shape[1], dtype=z.dtype).to(z.device)
        return Measurement(y, y, y)

    def log_likelihood(self, meas, z, extra_var=0.0):
        s = self.total_std(z, extra_var)
        r = (meas.y - z) / s
        return -0.5 * r * r - torch.log(s) - 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=z.dtype))

    def grad(self, meas, z, extra_var=0.0):
        s = self.total_std(z, extra_var)
        return (meas.y - z) / (s * s)

    def tilted_moments(self, meas, offset, mean, var):
        # offset + v = y pins v exactly: a point mass, variance 0 (EP then has a closed form)
        v = meas.y - offset
        return v, torch.zeros_like(v)
