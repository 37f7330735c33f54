"""lambda_max of A A^T by the Lanczos method on its products alone (docs/math.md §5).

The step caps of QCS-SGM, ALD, Diff-OneBit and DiffPIR need only the largest eigenvalue of
A A^T; a full eigendecomposition costs O(M^3) and an M x M matrix (hours at FFHQ 256 sizes),
Lanczos costs a few dozen products A A^T v.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
import torch

log = logging.getLogger(__name__)

MAX_ITERATIONS = 300
START_SEED = 0  # a fixed start vector: the same operator always gives the same lambda_max


def tolerance(dtype) -> float:
    """The relative accuracy Lanczos stops at: what products in ``dtype`` can resolve."""
    return max(16 * torch.finfo(dtype).eps, 1e-13)


def lanczos_top(apply, size: int, dtype=torch.float64, max_iter: int = MAX_ITERATIONS):
    """The largest eigenvalue theta of the symmetric positive semi-definite map ``apply`` (a
    float64 vector of ``size`` to its image) and its unit eigenvector y, by Lanczos with full
    reorthogonalisation from a seeded start vector.

    It stops when the residual r = ||apply(y) - theta y|| of the top Ritz pair is at most
    tolerance(dtype) * theta: some eigenvalue lies within r of theta (a Ritz value from a random
    start reaches the largest one first), and the Rayleigh quotient of y is within r^2 / gap of
    it, gap the distance to the next eigenvalue."""
    q = torch.randn(size, generator=torch.Generator().manual_seed(START_SEED), dtype=torch.float64)
    w = apply(q / q.norm())
    steps = min(size, max_iter)
    basis = torch.empty(steps + 1, size, dtype=torch.float64, device=w.device)
    basis[0] = (q / q.norm()).to(w.device)
    alphas, betas = [], []
    tol = tolerance(dtype)
    for k in range(steps):
        if k > 0:
            w = apply(basis[k])
        alphas.append(float(basis[k] @ w))
        for _ in range(2):  # full reorthogonalisation, twice: no ghost copies of converged Ritz values
            w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)
        beta = float(w.norm())
        theta, s = scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas))
        residual = beta * abs(s[-1, -1])
        if residual <= tol * theta[-1] or beta == 0 or k + 1 == size:
            break
        betas.append(beta)
        basis[k + 1] = w / beta
    else:
        log.warning("Lanczos stopped after %d iterations with a relative residual of %.1e: lambda_max(A A^T) "
                    "may be underestimated by about that much", steps, residual / theta[-1])
    y = basis[: k + 1].T @ torch.from_numpy(s[:, -1].copy()).to(basis.device)
    return float(theta[-1]), y / y.norm()
