"""Annealed Langevin for linear compressed sensing (Jalal et al., NeurIPS 2021; docs/math.md §6),
fed with the dequantized measurements, i.e. what one gets by ignoring quantization:

    x <- x + alpha_t [ s(x, beta_t) + A^T (y - A x) / (sigma^2 + beta_t^2) ] + sqrt(2 alpha_t) zeta

The sampler is QCS-SGM's (qcsbench/langevin.py); only the likelihood score differs."""
from __future__ import annotations

from qcsbench.channels import GaussianNoise, Measurement
from qcsbench.methods.qcs_sgm import QCSSGM


class LinearLikelihoodScore:
    """A^T (y - A x) / (sigma^2 + beta^2) with y the bin levels; the Gaussian channel's own gradient."""

    def __init__(self, problem, noise_std):
        self.operator = problem.operator
        y = problem.channel.dequantize(problem.measurement)
        self.measurement = Measurement(y, y, y)
        self.channel = GaussianNoise(noise_std)

    def curvature_bound(self, beta) -> float:
        return self.operator.gram_max_eig() / (self.channel.noise_std**2 + beta**2)

    def __call__(self, x, beta):
        g = self.channel.grad(self.measurement, self.operator.forward(x), extra_var=beta**2)
        return self.operator.adjoint(g)


class ALD(QCSSGM):
    """QCS-SGM's knobs (step_lr, steps_per_level, ladder, ...); noise_std: sigma of the linear model
    (null: the channel's)."""

    name = "ald"

    def __init__(self, name="ald", noise_std=None, step_lr=2e-5, **kwargs):
        super().__init__(name=name, step_lr=step_lr, **kwargs)
        self.noise_std = noise_std

    def likelihood_score(self, problem):
        s = problem.channel.noise_std if self.noise_std is None else self.noise_std
        return LinearLikelihoodScore(problem, float(s))
