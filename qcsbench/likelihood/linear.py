"""The linear-CS likelihood score of annealed Langevin for compressed sensing (Jalal et al.,
NeurIPS 2021), fed with the dequantized measurements, i.e. what one gets by ignoring quantization:

    A^T (y - A x) / (sigma^2 + beta_t^2),   y the bin levels, sigma the linear model's noise

(ALD's method config: ``likelihood: linear``)."""
from __future__ import annotations

import torch

from qcsbench.channels import GaussianNoise, Measurement
from qcsbench.problem import Problem
from qcsbench.settings import number, settings


class LinearLikelihoodScore:
    """``score(x, beta) -> A^T g`` with the Gaussian channel's own gradient on the bin levels."""

    def __init__(self, problem: Problem, noise_std: float):
        self.operator = problem.operator
        y = problem.channel.dequantize(problem.measurement)
        self.measurement = Measurement(y, y, y)
        self.channel = GaussianNoise(noise_std)

    def curvature_bounds(self, betas) -> torch.Tensor:
        """lambda_max(A A^T) / (sigma^2 + beta^2) per level beta (float64, on the host: no device data)."""
        top = self.operator.gram_max_eig()
        return torch.tensor([top / (self.channel.noise_std**2 + beta**2) for beta in betas], dtype=torch.float64)

    def __call__(self, x, beta):
        g = self.channel.grad(self.measurement, self.operator.forward(x), extra_var=beta**2)
        return self.operator.adjoint(g)


@settings("method", noise_std=number(0, null=True))
def knobs(noise_std=None) -> dict:
    """noise_std: sigma of the linear model (null: the channel's), ``method.noise_std``."""
    return dict(noise_std=noise_std)


def build(problem: Problem, noise_std=None) -> LinearLikelihoodScore:
    s = problem.channel.noise_std if noise_std is None else noise_std
    return LinearLikelihoodScore(problem, float(s))
