"""Block compressed sensing with a pixel permutation (the operator of IDM and the block-CS networks).

The N pixels (channels, then rows, then columns) are shuffled by a fixed random
permutation and cut into L = ceil(N / B^2) blocks of B^2 consecutive values, a B x B
block each; when B^2 does not divide N the last block is completed with zeros at its end
(the padding never reaches another block). Every block is measured by the same matrix
Phi with orthonormal rows (B^2 columns, Haar distributed); block l uses the first M_l
rows of Phi, M_l = M // L plus one for the first M mod L blocks, so the M measurements
are spread as evenly as they can be. The whole is scaled by sqrt(N/M):

    A = sqrt(N/M) blockdiag(Phi_1, ..., Phi_L) E Pi,

so without padding A A^T = (N/M) I and ||a_m||^2 = N/M, as the other operators. With
padding, the rows of the last block lose the columns that meet the zeros: A A^T is still
block-diagonal and is formed from Phi alone, never from the M x N matrix.
"""
from __future__ import annotations

import math

import torch

from qcsbench.operators.base import SEED, Operator, check_m, generator
from qcsbench.operators.dense import haar_orthonormal_columns
from qcsbench.settings import integer, settings


class BlockOperator(Operator):
    name = "block"

    def __init__(self, shape, m: int, seed: int = 0, block: int = 32, _state=None):
        super().__init__(shape, m)
        check_m(m, self.n, self.n, self.name)
        self.block = block
        self.size = block * block
        self.blocks = -(-self.n // self.size)  # L
        counts = [m // self.blocks + (l < m % self.blocks) for l in range(self.blocks)]
        self.rows_per_block = counts[0]
        if _state is None:
            g = generator(seed)
            permutation = torch.randperm(self.n, generator=g)
            phi = haar_orthonormal_columns(self.size, self.rows_per_block, g).T.float()
            _state = (permutation, phi)
        self.settings = dict(seed=seed, block=block)
        self.permutation, self.phi = _state
        # position of each measurement in the (L, rows_per_block) array of all block outputs
        self.kept = torch.cat([l * self.rows_per_block + torch.arange(k) for l, k in enumerate(counts)]).to(
            self.permutation.device)
        self.scale = math.sqrt(self.n / self.m)
        rows, _ = self._kept_rows()
        self._row_norms_sq = (self.scale**2 * (rows**2).sum(1)).to(self.phi.dtype)

    def _blocks(self, x):
        v = x.reshape(x.shape[0], self.n)[:, self.permutation]
        v = torch.nn.functional.pad(v, (0, self.blocks * self.size - self.n))
        return v.view(x.shape[0], self.blocks, self.size)

    def forward(self, x):
        out = self._blocks(x) @ self.phi.T
        return out.reshape(x.shape[0], -1)[:, self.kept] * self.scale

    def adjoint(self, y):
        full = y.new_zeros(y.shape[0], self.blocks * self.rows_per_block)
        full[:, self.kept] = y * self.scale
        v = (full.view(y.shape[0], self.blocks, self.rows_per_block) @ self.phi).reshape(y.shape[0], -1)
        x = torch.empty_like(v[:, : self.n])
        x[:, self.permutation] = v[:, : self.n]
        return x.view(y.shape[0], *self.shape)

    def _kept_rows(self):
        """The kept rows of Phi restricted to the real (not padded) columns of their block, float64."""
        valid = (torch.arange(self.blocks * self.size, device=self.phi.device) < self.n).view(self.blocks, self.size)
        block_of, row_of = self.kept // self.rows_per_block, self.kept % self.rows_per_block
        return self.phi.double()[row_of] * valid[block_of], block_of

    @property
    def row_norms_sq(self):
        return self._row_norms_sq

    def gram_matrix(self):
        rows, block_of = self._kept_rows()
        return self.scale**2 * (rows @ rows.T) * (block_of[:, None] == block_of[None, :])

    def known_gram_eig(self):
        if self.n % self.size:
            return None
        # A A^T = (N/M) I; U = None stands for the identity, so EP never builds an M x M matrix.
        return self.row_norms_sq, None

    def to(self, device=None, dtype=None):
        state = (self.permutation.to(device=device), self.phi.to(device=device, dtype=dtype))
        out = BlockOperator(self.shape, self.m, block=self.block, _state=state)
        return self.carry_gram_eig(out, device, dtype)


@settings("operator", seed=SEED, block=integer(1))
def block(shape, m: int, seed: int = 0, block: int = 32) -> BlockOperator:
    return BlockOperator(shape, m, seed, block)
