"""QCS-SGM's likelihood score: the diagonal (pseudo-likelihood) approximation of
grad_x log p(y | x_t) at noise level beta_t."""
from __future__ import annotations

import torch

from qcsbench.problem import Problem
from qcsbench.settings import settings


class DiagonalLikelihoodScore:
    """QCS-SGM's pseudo-likelihood score (docs/math.md §3): A^T g with
    g_m = d/dz_m log p(y_m | z_m) at noise variance sigma^2 + beta^2 ||a_m||^2, z = A x.
    Exact for row-orthogonal A under p(x_0 | x_t) ~ p(x_t | x_0)."""

    def __init__(self, problem: Problem):
        self.operator = problem.operator
        self.channel = problem.channel
        self.measurement = problem.measurement
        self.row_norms_sq = problem.operator.row_norms_sq

    def curvature_bounds(self, betas) -> torch.Tensor:
        """Per level beta (a sequence of floats), an upper bound on the largest eigenvalue of -Hessian
        of the log pseudo-likelihood: lambda_max(A A^T) / min_m s_m^2 (the Gaussian case; a bin's
        log-probability is no more curved than the Gaussian's, MacKay's logistic less so). The
        sampler uses it to keep its step stable: for an ill-conditioned A it exceeds the 1 / beta^2
        the exact posterior at level beta can have. min_m s_m^2 = sigma^2 + beta^2 min_m ||a_m||^2
        (rounding is monotone, so this is the smallest of the rounded s_m^2 too); float64, (L,)."""
        norms = self.row_norms_sq
        beta_sq = torch.tensor([beta**2 for beta in betas], dtype=torch.float64, device=norms.device)
        s2_min = beta_sq.to(norms.dtype) * norms.min() + self.channel.noise_std**2
        top = torch.tensor(self.operator.gram_max_eig(), dtype=torch.float64, device=norms.device)
        return top / s2_min.double()  # a tensor divided, not a float: float / tensor multiplies by a reciprocal

    def __call__(self, x, beta):
        z = self.operator.forward(x)
        g = self.channel.grad(self.measurement, z, extra_var=beta**2 * self.row_norms_sq)
        return self.operator.adjoint(g)


@settings("method")
def knobs() -> dict:
    """No settings of its own."""
    return {}


def build(problem: Problem) -> DiagonalLikelihoodScore:
    return DiagonalLikelihoodScore(problem)
