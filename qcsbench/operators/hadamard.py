"""Subsampled Walsh-Hadamard transform with random signs (single-pixel imaging), matrix-free.

Per channel, the H*W pixels (rows, then columns) are multiplied by random signs, padded
with zeros at the end to the next power of two P >= H*W, and sent through the orthonormal
Walsh-Hadamard transform of length P (natural / Sylvester order, O(P log P) butterflies).
Of the C*P coefficients M random ones are kept and scaled by sqrt(C*P/M):

    A = sqrt(C P / M) S (I_C (x) H_P E) D_s,    E: R^(HW) -> R^P the zero padding.

Every entry of H_P is +-1/sqrt(P), so every row has ||a_m||^2 = N/M exactly, as the other
operators. When H*W is a power of two (32 x 32, 64 x 64, 256 x 256) nothing is padded and
A A^T = (N/M) I. With padding (MNIST's 28 x 28 goes to 1024) the rows are no longer
orthogonal: two kept rows k, k' of one channel have (H E E^T H^T)[k, k'] = f(k XOR k'),
f = H_P 1_{HW} / sqrt(P), which gives A A^T in closed form without the M x N matrix.
"""
from __future__ import annotations

import math

import torch

from qcsbench.operators.base import SEED, Operator, check_m, generator, random_rows, random_signs
from qcsbench.settings import settings


def fwht(x: torch.Tensor) -> torch.Tensor:
    """The orthonormal Walsh-Hadamard transform over the last dimension (a power of two).

    H[i, j] = (-1)^popcount(i & j) / sqrt(P); H is symmetric and its own inverse."""
    p = x.shape[-1]
    lead = x.shape[:-1]
    h = 1
    while h < p:
        pairs = x.reshape(*lead, p // (2 * h), 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return x.reshape(*lead, p) / math.sqrt(p)


class SubsampledHadamard(Operator):
    name = "hadamard"

    def __init__(self, shape, m: int, seed: int = 0, _state=None):
        super().__init__(shape, m)
        check_m(m, self.n, self.n, self.name)
        self.channels, self.pixels = self.shape[0], self.n // self.shape[0]
        self.length = 1 << (self.pixels - 1).bit_length()  # P, the padded length of one channel
        if _state is None:
            g = generator(seed)
            signs = random_signs(self.n, g).float().view(self.channels, self.pixels)
            _state = (signs, random_rows(self.channels * self.length, m, g))
        self.settings = dict(seed=seed)
        self.signs, self.rows = _state
        self.scale = math.sqrt(self.channels * self.length / self.m)

    @property
    def padded(self) -> bool:
        return self.length != self.pixels

    def forward(self, x):
        v = x.reshape(x.shape[0], self.channels, self.pixels) * self.signs
        v = torch.nn.functional.pad(v, (0, self.length - self.pixels))
        return fwht(v).reshape(x.shape[0], -1)[:, self.rows] * self.scale

    def adjoint(self, y):
        full = y.new_zeros(y.shape[0], self.channels * self.length)
        full[:, self.rows] = y * self.scale
        v = fwht(full.view(y.shape[0], self.channels, self.length))[..., : self.pixels]
        return (v * self.signs).reshape(y.shape[0], *self.shape)

    @property
    def row_norms_sq(self):
        return torch.full((self.m,), self.n / self.m, dtype=self.signs.dtype, device=self.signs.device)

    def gram_matrix(self):
        device = self.signs.device
        f = fwht((torch.arange(self.length, device=device) < self.pixels).double()) / math.sqrt(self.length)
        channel, k = self.rows // self.length, self.rows % self.length
        same = channel[:, None] == channel[None, :]
        return self.scale**2 * f[k[:, None] ^ k[None, :]] * same

    def known_gram_eig(self):
        if self.padded:
            return None
        # A A^T = (N/M) I; U = None stands for the identity, so EP never builds an M x M matrix.
        return self.row_norms_sq, None

    def to(self, device=None, dtype=None):
        state = (self.signs.to(device=device, dtype=dtype), self.rows.to(device=device))
        return self.carry_gram_eig(SubsampledHadamard(self.shape, self.m, _state=state), device, dtype)


@settings("operator", seed=SEED)
def hadamard(shape, m: int, seed: int = 0) -> SubsampledHadamard:
    return SubsampledHadamard(shape, m, seed)
