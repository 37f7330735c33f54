"""Dense random sensing matrices: Gaussian, ill-conditioned, correlated (docs/math.md §5).

Each is drawn in float64 on the CPU from its own seed, so every method, batch size and
device sees the same A.
"""
from __future__ import annotations

import math

import torch

from qcsbench.errors import ConfigError
from qcsbench.operators.base import DenseOperator, check_m


def with_settings(op: DenseOperator, **settings) -> DenseOperator:
    op.settings = settings
    return op


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def haar_orthonormal_columns(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """An n x k matrix with orthonormal columns, Haar distributed (QR with sign fix)."""
    q, r = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def spd_sqrt(r: torch.Tensor) -> torch.Tensor:
    """The symmetric positive square root of a symmetric positive definite matrix."""
    d, u = torch.linalg.eigh(r)
    return (u * d.clamp_min(0).sqrt()) @ u.T


def toeplitz_correlation(size: int, rho: float) -> torch.Tensor:
    idx = torch.arange(size, dtype=torch.float64)
    return rho ** (idx[:, None] - idx[None, :]).abs()


def gaussian(shape, m: int, seed: int = 0, max_oversampling: int = 16) -> DenseOperator:
    """A_ij ~ N(0, 1/M), so E ||a_m||^2 = N/M. M may exceed N (oversampled 1-bit CS)."""
    n = math.prod(shape)
    check_m(m, n, max_oversampling * n, "gaussian")
    a = torch.randn(m, n, generator=_generator(seed), dtype=torch.float64) / math.sqrt(m)
    return with_settings(DenseOperator(a.float(), shape, "gaussian"), seed=seed)


def ill_conditioned(shape, m: int, seed: int = 0, kappa: float = 1000.0) -> DenseOperator:
    """A = U diag(d) V with Haar U, V and cond(A A^T) = kappa^((M-1)/M); ||A||_F^2 = N."""
    n = math.prod(shape)
    check_m(m, n, n, "ill_conditioned")
    if not kappa >= 1:
        raise ConfigError(f"operator.kappa={kappa} is not allowed: the condition number must be at least 1.")
    g = _generator(seed)
    u = haar_orthonormal_columns(m, m, g)
    v = haar_orthonormal_columns(n, m, g).T
    decay = kappa ** (-torch.arange(m, dtype=torch.float64) / m)
    d = torch.sqrt(n * decay / decay.sum())
    return with_settings(DenseOperator(((u * d) @ v).float(), shape, "ill_conditioned"), seed=seed, kappa=float(kappa))


def correlated(shape, m: int, seed: int = 0, rho: float = 0.4) -> DenseOperator:
    """A = R_M^(1/2) H R_N^(1/2) / sqrt(M), R[i, j] = rho^|i-j|, H i.i.d. N(0, 1), true matrix roots."""
    n = math.prod(shape)
    check_m(m, n, n, "correlated")
    if not 0 <= rho < 1:
        raise ConfigError(f"operator.rho={rho} is not allowed: the correlation must lie in [0, 1).")
    h = torch.randn(m, n, generator=_generator(seed), dtype=torch.float64)
    a = spd_sqrt(toeplitz_correlation(m, rho)) @ h @ spd_sqrt(toeplitz_correlation(n, rho)) / math.sqrt(m)
    return with_settings(DenseOperator(a.float(), shape, "correlated"), seed=seed, rho=float(rho))
