"""What a method is given: the operator, the channel and the measurement, never the truth."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from qcsbench.channels import Channel, Measurement
from qcsbench.errors import ConfigError
from qcsbench.operators import Operator
from qcsbench.randomness import MEASUREMENT, as_stream


@dataclass
class Problem:
    operator: Operator
    channel: Channel
    measurement: Measurement

    @classmethod
    def measure(cls, x: torch.Tensor, operator: Operator, channel: Channel, rng=0) -> "Problem":
        """y = Q(A x + n) for images x (B, C, H, W). rng (the noise and dither): a seed, a
        torch.Generator or an ImageRandom; a seed gives the measurements run.py takes with it."""
        if tuple(x.shape[1:]) != tuple(operator.shape):
            raise ConfigError(f"the images have shape {tuple(x.shape[1:])}, the operator was built for "
                              f"{tuple(operator.shape)}: build it with the images' shape.")
        stream = as_stream(rng, x.shape[0], x.device, purpose=MEASUREMENT)
        return cls(operator, channel, channel.measure(operator.forward(x), stream))

    @property
    def shape(self) -> tuple:
        return self.operator.shape

    @property
    def batch_size(self) -> int:
        return self.measurement.y.shape[0]

    def select(self, rows) -> "Problem":
        """The problem of these rows of the batch (a row given twice is measured once, recovered twice)."""
        return Problem(self.operator, self.channel, self.measurement.select(rows))

    def back_projection(self) -> torch.Tensor:
        """A^T y: what the measurements say before any prior."""
        return self.operator.adjoint(self.channel.dequantize(self.measurement))


@dataclass
class Recovery:
    """x_hat (B, C, H, W); nfe: score/denoiser evaluations per image; info: method-specific numbers;
    stats: per-image numbers for metrics.json, name -> tensor of shape (B,) (e.g. QCS-SGM+'s EP sweeps)."""

    x_hat: torch.Tensor
    nfe: int
    info: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def summarize_stats(per_image: list[dict]) -> dict:
    """A run's value of each stats number from its images': the largest for a name ending in
    ``_max``, the mean for any other."""
    names = sorted({name for stats in per_image for name in stats})
    values = {name: [stats[name] for stats in per_image if name in stats] for name in names}
    return {name: max(v) if name.endswith("_max") else sum(v) / len(v) for name, v in values.items()}
