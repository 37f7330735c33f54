"""The sensing operator interface: A maps images (B, C, H, W) to measurements (B, M)."""
from __future__ import annotations

import math

import torch

from qcsbench.errors import ConfigError


def check_m(m: int, n: int, max_m: int, name: str) -> None:
    """Stop before any compute when the number of measurements cannot work."""
    if not isinstance(m, int) or m < 1 or m > max_m:
        raise ConfigError(
            f"m={m} is not allowed for operator={name}: use an integer from 1 to {max_m} (N = {n} pixels)."
        )


def generator(seed: int) -> torch.Generator:
    """A CPU generator: an operator is drawn on the CPU, so every device sees the same A."""
    return torch.Generator().manual_seed(int(seed))


def random_signs(size: int, g: torch.Generator) -> torch.Tensor:
    """``size`` independent +-1 values."""
    return torch.randint(0, 2, (size,), generator=g).double() * 2 - 1


def random_rows(total: int, m: int, g: torch.Generator) -> torch.Tensor:
    """m distinct indices out of ``total``, sorted: the rows a subsampled transform keeps."""
    return torch.randperm(total, generator=g)[:m].sort().values


class Operator:
    """A linear map A: R^N -> R^M on images of shape (C, H, W), N = C*H*W.

    Subclasses implement ``forward``, ``adjoint`` and ``row_norms_sq``; the
    eigendecomposition of A A^T (needed by expectation propagation) is computed
    once, on first use, and cached.
    """

    name = "operator"
    settings: dict = {}  # the values it was drawn with (seed, kappa, rho), for describe()

    def __init__(self, shape, m: int):
        self.shape = tuple(int(s) for s in shape)
        self.n = math.prod(self.shape)
        self.m = int(m)
        self._gram_eig = None
        self._gram_u_t = None

    def describe(self) -> dict:
        """The name and the values this operator was built with (what metrics.json and W&B report)."""
        return dict(name=self.name, m=self.m, n=self.n, **self.settings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def row_norms_sq(self) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device=None, dtype=None) -> "Operator":
        raise NotImplementedError

    def matrix(self) -> torch.Tensor:
        """The dense M x N matrix (for tests and small problems): A applied to the identity."""
        eye = torch.eye(self.n, dtype=self.row_norms_sq.dtype, device=self.row_norms_sq.device)
        return self.forward(eye.view(self.n, *self.shape)).T.contiguous()

    def gram_max_eig(self) -> float:
        """lambda_max(A A^T), cached with the eigendecomposition."""
        return float(self.gram_eig()[0].max())

    def gram_filter(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """U diag(w) U^T h for each row of h (B, M), w of shape (M,) or (B, M): a function of
        A A^T applied by two (B, M) x (M, M) products, never an M x M matrix per image.
        U = None (an operator whose A A^T is diagonal) stands for the identity."""
        _, u = self.gram_eig()
        if u is None:
            return w * h
        if self._gram_u_t is None:
            # a product with the transposed view of U runs about half as fast on CPU
            self._gram_u_t = u.T.contiguous()
        return ((h @ u) * w) @ self._gram_u_t

    def carry_gram_eig(self, out: "Operator", device=None, dtype=None) -> "Operator":
        """Give ``out`` (this operator moved by ``to``) the eigendecomposition already computed."""
        if self._gram_eig is not None:
            out._gram_eig = tuple(None if t is None else t.to(device=device, dtype=dtype) for t in self._gram_eig)
        return out

    def gram_matrix(self) -> torch.Tensor:
        """A A^T (M x M) in float64. This default forms the M x N matrix; structured operators
        override it with a closed form that never does."""
        a = self.matrix().double()
        return a @ a.T

    def gram_eig(self):
        """(d, U) with A A^T = U diag(d) U^T, d ascending; computed in float64 once and cached."""
        if self._gram_eig is None:
            d, u = torch.linalg.eigh(self.gram_matrix())
            dtype = self.row_norms_sq.dtype
            self._gram_eig = (d.clamp_min(0).to(dtype), u.to(dtype))
        return self._gram_eig


class DenseOperator(Operator):
    """An explicit M x N matrix."""

    def __init__(self, matrix: torch.Tensor, shape, name: str = "dense"):
        super().__init__(shape, matrix.shape[0])
        if matrix.shape[1] != self.n:
            raise ValueError(f"matrix has {matrix.shape[1]} columns, images have {self.n} pixels")
        self.name = name
        self.a = matrix
        self._row_norms_sq = (matrix.double() ** 2).sum(1).to(matrix.dtype)

    def forward(self, x):
        return x.reshape(x.shape[0], -1) @ self.a.T

    def adjoint(self, y):
        return (y @ self.a).view(y.shape[0], *self.shape)

    @property
    def row_norms_sq(self):
        return self._row_norms_sq

    def matrix(self):
        return self.a

    def to(self, device=None, dtype=None):
        out = DenseOperator(self.a.to(device=device, dtype=dtype), self.shape, self.name)
        if self._gram_eig is not None:
            out._gram_eig = tuple(t.to(device=device, dtype=dtype) for t in self._gram_eig)
        return out
