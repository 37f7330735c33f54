"""Logistic regression (Diff-OneBit's second task, docs/math.md §1): y_m = +-1 with
P(y_m = 1 | z_m) = sigmoid(z_m / T), z = A x.

The same as y = sign(z + n) with n logistic of scale T, so the bins handed to methods are
the sign bins [0, inf) and (-inf, 0) (in units of z + n, with n logistic, not Gaussian).

Likelihood at extra variance v (QCS-SGM's beta^2 ||a_m||^2, plus noise_std^2 when
Gaussian noise is added before the logistic draw): the logistic-Gaussian convolution
E[sigmoid((z + e)/T)], e ~ N(0, v), has no closed form; we use MacKay's probit
approximation sigmoid(z / sqrt(T^2 + pi v / 8)) (sigmoid(t) ~ Phi(t sqrt(pi/8)), then the
probit-Gaussian convolution is exact). At v = 0 it is the exact logistic likelihood, so
Diff-OneBit's data term log(1 + exp(-y z / T)) is this channel's at extra_var = 0.
Everything is written with softplus / logsigmoid, finite for any |z / T|.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from qcsbench.channels.base import Channel, Measurement
from qcsbench.settings import number, settings


@settings("quantizer", temperature=number(0, lo_open=True))
class LogisticChannel(Channel):
    name = "logistic"

    def __init__(self, temperature: float = 0.1, noise_std: float = 0.0):
        super().__init__(noise_std)
        self.temperature = float(temperature)

    def describe(self):
        return dict(super().describe(), temperature=self.temperature)

    def measure(self, z, rng):
        # Both draws are always made, so the uniforms do not depend on noise_std.
        v = z + self.noise_std * rng.randn(z.shape[1], dtype=z.dtype).to(z.device)
        u = rng.rand(z.shape[1], dtype=z.dtype).to(z.device)
        positive = u < torch.sigmoid(v / self.temperature)
        y = torch.where(positive, 1.0, -1.0).to(z.dtype)
        inf = torch.full_like(z, float("inf"))
        lower = torch.where(positive, torch.zeros_like(z), -inf)
        upper = torch.where(positive, inf, torch.zeros_like(z))
        return Measurement(y, lower, upper)

    def scale(self, z, extra_var):
        """sqrt(T^2 + pi (noise_std^2 + extra_var) / 8): the probit-approximated convolution's temperature."""
        var = torch.as_tensor(extra_var, dtype=z.dtype, device=z.device) + self.noise_std**2
        return (self.temperature**2 + math.pi / 8 * var).sqrt()

    def log_likelihood(self, meas, z, extra_var=0.0):
        return F.logsigmoid(meas.y * z / self.scale(z, extra_var))

    def gaussian_form(self):
        """The same probit approximation, sigmoid(t) ~ Phi(t sqrt(pi / 8)), read as a sign
        quantizer after Gaussian noise of variance noise_std^2 + 8 T^2 / pi: what lets
        QCS-SGM+'s expectation propagation run on the logistic task."""
        from qcsbench.channels.quantizer import UniformQuantizer

        return UniformQuantizer(1, noise_std=math.sqrt(self.noise_std**2 + 8 * self.temperature**2 / math.pi))

    def curvature_bound(self, extra_var=0.0):
        """-d^2/dz^2 log sigmoid(y z / s) = sigmoid'(y z / s) / s^2 <= 1 / (4 s^2), s = self.scale."""
        s = self.scale(torch.zeros(()), extra_var)
        return float(1.0 / (4 * s * s))

    def grad(self, meas, z, extra_var=0.0):
        s = self.scale(z, extra_var)
        return meas.y * torch.sigmoid(-meas.y * z / s) / s
