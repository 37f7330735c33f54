"""What happens after A: noise and quantization, and the observation model methods use."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from qcsbench.settings import number, settings


@dataclass
class Measurement:
    """y: the values a method receives (the quantizer's output levels, or +-1 for 1 bit);
    lower, upper: the bin [l, u) each y stands for, in the units of z = A x (edges may be
    infinite; for unquantized data l = u = y)."""

    y: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor

    def to(self, device=None, dtype=None) -> "Measurement":
        return Measurement(*(t.to(device=device, dtype=dtype) for t in (self.y, self.lower, self.upper)))

    def select(self, index) -> "Measurement":
        return Measurement(self.y[index], self.lower[index], self.upper[index])


@settings("quantizer", noise_std=number(0))
class Channel:
    """y = Q(z + n), n ~ N(0, noise_std^2 I). Methods only see the observation model:

    ``log_likelihood(meas, z, extra_var)`` = log p(y_m | z_m) when the noise variance is
    noise_std^2 + extra_var (extra_var is the beta^2 ||a_m||^2 that QCS-SGM adds), and
    ``grad`` its derivative in z. A method never asks how many bits there were.
    """

    name = "channel"  # the quantizer= word for it in sentences
    takes_bits = False  # whether it quantizes to the top-level `bits` levels (else bits must stay 1)

    def __init__(self, noise_std: float):
        self.noise_std = float(noise_std)

    @classmethod
    def run_label(cls, bits) -> str:
        """This channel's word in a run folder's name (``${channel_label:}``): its name unless it says otherwise."""
        return cls.name

    @classmethod
    def couples_batch(cls, settings: dict) -> bool:
        """Whether, with these settings (its config), an image's measurement depends on the rest of its batch
        (the store then keys results by the batch size and resumes whole batches)."""
        return False

    def describe(self) -> dict:
        """The name and the values this channel runs with (what metrics.json and W&B report)."""
        return dict(name=self.name, noise_std=self.noise_std)

    def measure(self, z: torch.Tensor, rng) -> Measurement:
        raise NotImplementedError

    def log_likelihood(self, meas: Measurement, z: torch.Tensor, extra_var=0.0) -> torch.Tensor:
        raise NotImplementedError

    def grad(self, meas: Measurement, z: torch.Tensor, extra_var=0.0) -> torch.Tensor:
        raise NotImplementedError

    def tilted_moments(self, meas: Measurement, offset: torch.Tensor, mean, var):
        """Mean and variance of v ~ N(mean, var) once we know that offset + v produced y.

        For expectation propagation (docs/math.md §4): v = z + n - A x_t already carries
        the channel's Gaussian noise, so what is left of the observation is the bare
        quantizer (the bin [l, u) of offset + v) or, without quantization, offset + v = y.
        """
        raise NotImplementedError

    # Every bin a half-line (sign measurements, 1 bit): EP's reference code converges such data
    # to a tighter tolerance and scores them differently, so EP asks this instead of the bits.
    half_line_bins = False
    # Every value observed exactly (no bins, y = z + n): EP's tilted moments are then a point mass and
    # its fixed point has a closed form.
    point_values = False

    def gaussian_form(self) -> "Channel":
        """This channel written as Gaussian noise followed by bins, the form EP works with."""
        return self

    def dequantize(self, meas: Measurement) -> torch.Tensor:
        """A point estimate of z + n for methods that ignore quantization: the bin's level."""
        return meas.y

    def curvature_bound(self, extra_var=0.0) -> float:
        """sup over z of -d^2/dz^2 log p(y | z): how sharply a measurement's pull can change.

        With Gaussian noise of variance s^2 = noise_std^2 + extra_var it is 1/s^2, bins or not:
        for a bin, -d^2/dz^2 log P = (1 - Var[v | bin] / s^2) / s^2 with v ~ N(z, s^2), and the
        truncated variance is never negative. Infinite for a noiseless quantizer (a step function)."""
        var = self.noise_std**2 + float(extra_var)
        return 1.0 / var if var > 0 else float("inf")

    def total_std(self, z: torch.Tensor, extra_var) -> torch.Tensor:
        return (torch.as_tensor(extra_var, dtype=z.dtype, device=z.device) + self.noise_std**2).sqrt()
