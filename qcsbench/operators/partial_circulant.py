"""Partial circulant matrix with random signs, applied by FFT (the structured matrix of 1-bit CS theory).

A x = (1/sqrt(M)) P C_g D_s x on the N pixels taken as one vector (channels, then rows,
then columns): D_s flips the sign of each pixel at random, C_g is the circular
convolution with a filter g of N i.i.d. N(0, 1) entries, P keeps M random output
positions. Every entry of A is N(0, 1/M), as for the Gaussian operator, and every row has
||a_m||^2 = ||g||^2 / M (about N/M). The rows are not orthogonal: A A^T is the M x M
principal submatrix of the circulant C_g C_g^T (divided by M), whose entries come from the
autocorrelation of g, so it is formed without the M x N matrix.
"""
from __future__ import annotations

import math

import torch

from qcsbench.operators.base import SEED, Operator, check_m, generator, random_rows, random_signs
from qcsbench.settings import settings


class PartialCirculant(Operator):
    name = "partial_circulant"

    def __init__(self, shape, m: int, seed: int = 0, _state=None):
        super().__init__(shape, m)
        check_m(m, self.n, self.n, self.name)
        if _state is None:
            g = generator(seed)
            signs = random_signs(self.n, g).float()
            taps = torch.randn(self.n, generator=g, dtype=torch.float64).float()
            _state = (signs, taps, random_rows(self.n, m, g))
        self.settings = dict(seed=seed)
        self.signs, self.taps, self.rows = _state
        self.taps_hat = torch.fft.rfft(self.taps)
        self.scale = 1.0 / math.sqrt(self.m)

    def forward(self, x):
        v = x.reshape(x.shape[0], self.n) * self.signs
        z = torch.fft.irfft(torch.fft.rfft(v) * self.taps_hat, n=self.n)
        return z[:, self.rows] * self.scale

    def adjoint(self, y):
        full = y.new_zeros(y.shape[0], self.n)
        full[:, self.rows] = y * self.scale
        # C_g^T is the circular cross-correlation with g: conjugate spectrum
        v = torch.fft.irfft(torch.fft.rfft(full) * self.taps_hat.conj(), n=self.n)
        return (v * self.signs).view(y.shape[0], *self.shape)

    @property
    def row_norms_sq(self):
        norm = (self.taps.double() ** 2).sum() / self.m
        return torch.full((self.m,), float(norm), dtype=self.taps.dtype, device=self.taps.device)

    def gram_matrix(self):
        # (C_g C_g^T)[a, b] = r[(a - b) mod N], r the circular autocorrelation of g (symmetric in the lag)
        taps = self.taps.double()
        r = torch.fft.irfft(torch.fft.rfft(taps).abs() ** 2, n=self.n)
        rows = self.rows.to(taps.device)
        return r[(rows[:, None] - rows[None, :]) % self.n] / self.m

    def to(self, device=None, dtype=None):
        state = (self.signs.to(device=device, dtype=dtype), self.taps.to(device=device, dtype=dtype),
                 self.rows.to(device=device))
        return self.carry_gram_eig(PartialCirculant(self.shape, self.m, _state=state), device, dtype)


@settings("operator", seed=SEED)
def partial_circulant(shape, m: int, seed: int = 0) -> PartialCirculant:
    return PartialCirculant(shape, m, seed)
