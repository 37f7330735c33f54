"""The data term every plug-and-play method minimises: the channel's negative log-likelihood
L(x) = -sum_m log p(y_m | a_m^T x) at extra_var = 0, and its gradient in x.

For 1-bit quantized data this is Diff-OneBit's probit term -sum log Phi(y a^T x / sigma);
for the logistic channel its logistic term sum log(1 + exp(-y a^T x / T))
(docs/math.md §6). The channel evaluates both stably; nothing is written twice here.
"""
from __future__ import annotations

import torch

from qcsbench.problem import Problem


def surrogate_var(surrogate_std, channel) -> float:
    """The extra variance that widens the channel's likelihood to a surrogate of width
    ``surrogate_std``: none where that is null or the channel's noise is already as wide."""
    if surrogate_std is None:
        return 0.0
    return max(0.0, surrogate_std**2 - channel.noise_std**2)


def nll(problem: Problem, x: torch.Tensor, extra_var=0.0) -> torch.Tensor:
    """L(x) per image, shape (B,). extra_var > 0 widens the likelihood (a smoother surrogate)."""
    z = problem.operator.forward(x)
    return -problem.channel.log_likelihood(problem.measurement, z, extra_var).sum(1)


def nll_grad(problem: Problem, x: torch.Tensor, extra_var=0.0) -> torch.Tensor:
    """grad_x L(x) = -A^T g, g_m = d/dz_m log p(y_m | z_m)."""
    z = problem.operator.forward(x)
    return -problem.operator.adjoint(problem.channel.grad(problem.measurement, z, extra_var))


def nll_surrogate(problem: Problem, z: torch.Tensor) -> torch.Tensor:
    """A scalar whose autograd gradient in z is grad_z L (summed over the batch): -<g, z> with g
    held fixed. Backpropagating it through A and a denoiser gives grad_x L(A D(x)) exactly,
    using the channel's own stable derivative instead of differentiating log Phi by autograd
    (whose infinite bin edges would give NaN)."""
    g = problem.channel.grad(problem.measurement, z.detach())
    return -(g * z).sum()
