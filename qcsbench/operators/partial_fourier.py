"""Partial Fourier in real form: real and imaginary parts of random 2-D DFT coefficients, matrix-free.

The orthonormal 2-D DFT F of each channel (norm="ortho") maps a real H x W image to
coefficients with X[-k] = conj(X[k]), so the image has H*W real degrees of freedom:

- a frequency equal to its own mirror, k = -k (mod H, W), is real: its row is Re F_k
  (the DC term, and the Nyquist rows / columns when H or W is even);
- every other pair {k, -k} gives two rows, sqrt(2) Re F_k and sqrt(2) Im F_k, for the k
  of the pair with the smaller flat index.

These H*W rows are an orthonormal basis of R^(HW). Of the C*H*W rows of all channels M
random ones are kept and scaled by sqrt(N/M), so A A^T = (N/M) I and ||a_m||^2 = N/M,
as the DCT operator. Unlike it there are no random signs: this is the plain subsampled
Fourier operator of MRI-style compressed sensing (with uniform, not variable-density,
sampling of the coefficients).
"""
from __future__ import annotations

import math

import torch

from qcsbench.operators.base import SEED, Operator, check_m, generator, random_rows
from qcsbench.settings import settings


def real_fourier_rows(h: int, w: int):
    """For the H*W real rows of one channel: (flat frequency index, imaginary part?, weight)."""
    kh, kw = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    flat = (kh * w + kw).flatten()
    mirror = (((-kh) % h) * w + (-kw) % w).flatten()
    real_only = flat[flat == mirror]
    paired = flat[flat < mirror]
    index = torch.cat([real_only, paired, paired])
    imag = torch.cat([torch.zeros(len(real_only) + len(paired), dtype=torch.bool),
                      torch.ones(len(paired), dtype=torch.bool)])
    weight = torch.cat([torch.ones(len(real_only), dtype=torch.float64),
                        torch.full((2 * len(paired),), math.sqrt(2.0), dtype=torch.float64)])
    return index, imag, weight


class PartialFourier(Operator):
    name = "partial_fourier"

    def __init__(self, shape, m: int, seed: int = 0, _state=None):
        super().__init__(shape, m)
        check_m(m, self.n, self.n, self.name)
        if _state is None:
            c, h, w = self.shape
            index, imag, weight = real_fourier_rows(h, w)
            kept = random_rows(self.n, m, generator(seed))
            channel, row = kept // (h * w), kept % (h * w)
            _state = (channel * (h * w) + index[row], imag[row], (weight[row] * math.sqrt(self.n / m)).float())
        self.settings = dict(seed=seed)
        self.index, self.imag, self.weight = _state

    def forward(self, x):
        coeffs = torch.fft.fft2(x, norm="ortho").reshape(x.shape[0], -1)[:, self.index]
        return torch.where(self.imag, coeffs.imag, coeffs.real) * self.weight

    def adjoint(self, y):
        # sum_m c_m Re F_k + d_m Im F_k = Re sum_m (c_m - i d_m) F_k, and F is symmetric: A^T y = Re F Z
        c = y * self.weight
        re = y.new_zeros(y.shape[0], self.n).index_add_(1, self.index[~self.imag], c[:, ~self.imag])
        im = y.new_zeros(y.shape[0], self.n).index_add_(1, self.index[self.imag], -c[:, self.imag])
        z = torch.complex(re, im).view(y.shape[0], *self.shape)
        return torch.fft.fft2(z, norm="ortho").real

    @property
    def row_norms_sq(self):
        return torch.full((self.m,), self.n / self.m, dtype=self.weight.dtype, device=self.weight.device)

    def known_gram_eig(self):
        # A A^T = (N/M) I; U = None stands for the identity, so EP never builds an M x M matrix.
        return self.row_norms_sq, None

    def to(self, device=None, dtype=None):
        state = (self.index.to(device=device), self.imag.to(device=device),
                 self.weight.to(device=device, dtype=dtype))
        return self.carry_gram_eig(PartialFourier(self.shape, self.m, _state=state), device, dtype)


@settings("operator", seed=SEED)
def partial_fourier(shape, m: int, seed: int = 0) -> PartialFourier:
    return PartialFourier(shape, m, seed)
