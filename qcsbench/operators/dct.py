"""Subsampled orthonormal DCT with random signs: row-orthogonal and matrix-free.

A x = sqrt(N/M) * P T (s * x): s random signs on the pixels, T the orthonormal 2-D
DCT-II of each channel (two small H x H and W x W products), P keeps M random
coefficients. A A^T = (N/M) I, so every row has ||a_m||^2 = N/M like the Gaussian
matrix, and no M x N matrix is ever formed.
"""
from __future__ import annotations

import math

import torch

from qcsbench.operators.base import SEED, Operator, check_m
from qcsbench.settings import settings


def dct_matrix(size: int, dtype=torch.float64) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (D @ v is the transform of v)."""
    k = torch.arange(size, dtype=dtype)[:, None]
    i = torch.arange(size, dtype=dtype)[None, :]
    d = torch.cos(math.pi * (i + 0.5) * k / size) * math.sqrt(2.0 / size)
    d[0] /= math.sqrt(2.0)
    return d


class SubsampledDCT(Operator):
    name = "dct"

    def __init__(self, shape, m: int, seed: int = 0, _state=None):
        super().__init__(shape, m)
        check_m(m, self.n, self.n, "dct")
        if _state is None:
            g = torch.Generator().manual_seed(int(seed))
            signs = torch.randint(0, 2, self.shape, generator=g).float() * 2 - 1
            rows = torch.randperm(self.n, generator=g)[:m].sort().values
            _, h, w = self.shape
            _state = (signs, rows, dct_matrix(h).float(), dct_matrix(w).float())
        self.settings = dict(seed=seed)
        self.signs, self.rows, self.dh, self.dw = _state
        self.scale = math.sqrt(self.n / self.m)

    def forward(self, x):
        coeffs = self.dh @ (x * self.signs) @ self.dw.T
        return coeffs.reshape(x.shape[0], -1)[:, self.rows] * self.scale

    def adjoint(self, y):
        full = y.new_zeros(y.shape[0], self.n)
        full[:, self.rows] = y * self.scale
        return (self.dh.T @ full.view(y.shape[0], *self.shape) @ self.dw) * self.signs

    @property
    def row_norms_sq(self):
        return torch.full((self.m,), self.n / self.m, dtype=self.dh.dtype, device=self.dh.device)

    def known_gram_eig(self):
        # A A^T = (N/M) I exactly; U = None stands for the identity, so EP never builds an M x M matrix.
        return self.row_norms_sq, None

    def to(self, device=None, dtype=None):
        state = (self.signs.to(device=device, dtype=dtype), self.rows.to(device=device),
                 self.dh.to(device=device, dtype=dtype), self.dw.to(device=device, dtype=dtype))
        return self.carry_gram_eig(SubsampledDCT(self.shape, self.m, _state=state), device, dtype)


@settings("operator", seed=SEED)
def dct(shape, m: int, seed: int = 0) -> SubsampledDCT:
    return SubsampledDCT(shape, m, seed)
