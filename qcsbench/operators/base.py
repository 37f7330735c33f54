"""The sensing operator interface: A maps images (B, C, H, W) to measurements (B, M)."""
from __future__ import annotations

import math

import scipy.linalg
import torch

from qcsbench.errors import ConfigError
from qcsbench.operators import gram_cache
from qcsbench.operators.krylov import lanczos_top
from qcsbench.settings import SEED64, integer

# Identity columns per block when an operator is turned into its matrix: A applied to B x N at a time.
MATRIX_BLOCK = 512
# A dense matrix is drawn, moved and reduced this many bytes of float64 at a time (a multiple of 16
# rows: torch's CPU randn fills blocks of 16 values, so the chunks together are the one-shot draw).
CHUNK_BYTES = 64 << 20
# Storage dtypes whose products are taken in float32, a chunk of rows of this many float32 bytes at a time.
LOW_PRECISION = (torch.bfloat16, torch.float16)
PRODUCT_CHUNK_BYTES = 1 << 30
# A float32 operator with at least this many rows has A A^T decomposed in float32 (half the time of
# float64 on the CPU: about 3 s against 7.5 s at M = 4,000 on two cores) when the result's condition
# number is at most FLOAT32_EIG_MAX_COND, which bounds every eigenvalue's relative error near
# eps32 * cond (1e-4); a worse-conditioned A A^T is decomposed again in float64 (docs/math.md §5).
FLOAT32_EIG_MIN_M = 2048
FLOAT32_EIG_MAX_COND = 1e3


SEED = integer(0, SEED64)  # every operator's seed (torch.manual_seed takes 64 bits)


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


def chunk_rows(columns: int, rows: int, itemsize: int = 8, size: int | None = None) -> int:
    """Rows of a ``columns``-wide matrix in one chunk of about ``size`` bytes (CHUNK_BYTES): a
    multiple of 16, at most ``rows``."""
    per_chunk = max(16, (size or CHUNK_BYTES) // (itemsize * columns) // 16 * 16)
    return min(per_chunk, rows)


def row_chunks(rows: int, columns: int, itemsize: int = 8, size: int | None = None):
    """Slices over ``rows`` in chunks of ``chunk_rows``."""
    step = chunk_rows(columns, rows, itemsize, size)
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def unit_block(start: int, stop: int, n: int, dtype, device) -> torch.Tensor:
    """Rows start..stop-1 of the n x n identity, without the identity."""
    rows = torch.arange(stop - start, device=device)
    block = torch.zeros(stop - start, n, dtype=dtype, device=device)
    block[rows, rows + start] = 1
    return block


class Operator:
    """A linear map A: R^N -> R^M on images of shape (C, H, W), N = C*H*W.

    Subclasses implement ``forward``, ``adjoint``, ``row_norms_sq`` and ``to``. lambda_max(A A^T)
    comes from Lanczos on forward / adjoint (``gram_max_eig``); the eigendecomposition of A A^T
    (needed by expectation propagation and DiffPIR's exact prox) is computed once, on first use,
    and cached in memory and, when ``cache_dir`` is set, on disk keyed by ``describe()``.
    """

    name = "operator"
    settings: dict = {}  # the values it was drawn with (seed, kappa, rho), for describe()
    cache_dir = None  # a folder for the eigendecomposition of A A^T (Setup sets it); None: memory only

    def __init__(self, shape, m: int):
        self.shape = tuple(int(s) for s in shape)
        self.n = math.prod(self.shape)
        self.m = int(m)
        self._gram_eig = None
        self._gram_max = None
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
        """The dense M x N matrix (for tests and small problems): A applied to the identity, a
        block of its rows at a time, so no N x N matrix is ever allocated."""
        dtype, device = self.row_norms_sq.dtype, self.row_norms_sq.device
        out = torch.empty(self.m, self.n, dtype=dtype, device=device)
        for start in range(0, self.n, MATRIX_BLOCK):
            stop = min(start + MATRIX_BLOCK, self.n)
            out[:, start:stop] = self.forward(unit_block(start, stop, self.n, dtype, device).view(-1, *self.shape)).T
        return out

    def gram_max_eig(self) -> float:
        """lambda_max(A A^T), rounded to the operator's dtype: from the eigendecomposition when it is
        known, otherwise by Lanczos on forward / adjoint in the operator's dtype, finished by the
        Rayleigh quotient ||A^T y||^2 of its eigenvector y in float64 (docs/math.md §5); cached."""
        if self._gram_max is None:
            dtype = self.row_norms_sq.dtype
            known = self._gram_eig if self._gram_eig is not None else self.known_gram_eig()
            if known is not None:
                largest = float(known[0].max())
            else:
                _, y = lanczos_top(self.gram_apply, self.m, dtype)
                largest = float((self.exact_adjoint(y.unsqueeze(0)) ** 2).sum())
            self._gram_max = float(torch.tensor(largest).to(dtype))
        return self._gram_max

    def gram_apply(self, v: torch.Tensor) -> torch.Tensor:
        """A A^T v for one float64 vector v (M,), through forward and adjoint in the operator's dtype."""
        norms = self.row_norms_sq
        return self.forward(self.adjoint(v.to(device=norms.device, dtype=norms.dtype).unsqueeze(0)))[0].double()

    def exact_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y in float64 (a float64 copy of the operator, which for a structured one is small)."""
        exact = self if self.row_norms_sq.dtype == torch.float64 else self.to(dtype=torch.float64)
        return exact.adjoint(y.to(device=self.row_norms_sq.device, dtype=torch.float64))

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
        """Give ``out`` (this operator moved by ``to``) what is already computed about A A^T
        (lambda_max, the eigendecomposition), its settings and where its eigendecomposition is cached."""
        out.cache_dir, out.settings = self.cache_dir, self.settings
        if self._gram_eig is not None:
            out._gram_eig = tuple(None if t is None else t.to(device=device, dtype=dtype) for t in self._gram_eig)
        if self._gram_max is not None and (dtype is None or dtype == self.row_norms_sq.dtype):
            out._gram_max = self._gram_max
        return out

    def gram_matrix(self) -> torch.Tensor:
        """A A^T (M x M) in float64. This default applies A to blocks of columns of A^T (A^T
        applied to blocks of the identity), so no M x N or N x N matrix appears; structured
        operators override it with a closed form, the dense one with a product in chunks."""
        exact = self if self.row_norms_sq.dtype == torch.float64 else self.to(dtype=torch.float64)
        device = self.row_norms_sq.device
        out = torch.empty(self.m, self.m, dtype=torch.float64, device=device)
        for start in range(0, self.m, MATRIX_BLOCK):
            stop = min(start + MATRIX_BLOCK, self.m)
            out[:, start:stop] = exact.forward(exact.adjoint(unit_block(start, stop, self.m, torch.float64, device))).T
        return out

    def known_gram_eig(self):
        """(d, U) when the structure gives A A^T's eigendecomposition in closed form (U = None:
        the identity), else None."""
        return None

    def gram_eig(self):
        """(d, U) with A A^T = U diag(d) U^T, d ascending: the closed form where there is one,
        otherwise computed in float64 once, kept in memory and in ``cache_dir`` (a later run
        with the same operator reads it back)."""
        known = self.known_gram_eig()
        if known is not None:
            return known
        if self._gram_eig is None:
            dtype = self.row_norms_sq.dtype
            key = dict(operator=self.describe(), shape=list(self.shape), dtype=str(dtype))
            self._gram_eig = gram_cache.load_or_compute(self.cache_dir, key, self._compute_gram_eig,
                                                        device=self.row_norms_sq.device, dtype=dtype)
        return self._gram_eig

    def gram_matrix_float32(self) -> torch.Tensor:
        """A A^T in float32 for the float32 eigendecomposition; closed forms are cheap in float64."""
        return self.gram_matrix().float()

    def _compute_gram_eig(self):
        dtype = self.row_norms_sq.dtype
        if dtype == torch.float32 and self.m >= FLOAT32_EIG_MIN_M:
            d, u = symmetric_eig(self.gram_matrix_float32())
            if d[0] > 0 and d[-1] <= FLOAT32_EIG_MAX_COND * d[0]:
                return d, u
        d, u = symmetric_eig(self.gram_matrix())
        return d.clamp_min(0).to(dtype), u.to(dtype)


def symmetric_eig(gram: torch.Tensor):
    """(d ascending, U) of a symmetric matrix, in its dtype (consumed)."""
    if gram.device.type != "cpu":
        return torch.linalg.eigh(gram)
    # LAPACK's divide and conquer through scipy: the decomposition torch.linalg.eigh gives, in
    # 0.57 of its CPU time at M = 4,000 (37 s against 65 s on two cores, float64)
    d, u = scipy.linalg.eigh(gram.numpy(), driver="evd", overwrite_a=True, check_finite=False)
    return torch.from_numpy(d), torch.from_numpy(u)


class DenseOperator(Operator):
    """An explicit M x N matrix, stored in float32 or float64, or in bfloat16 / float16 with
    every product taken in float32 (a chunk of rows converted at a time)."""

    def __init__(self, matrix: torch.Tensor, shape, name: str = "dense", row_norms_sq=None, known_eig=None):
        super().__init__(shape, matrix.shape[0])
        if matrix.shape[1] != self.n:
            raise ValueError(f"matrix has {matrix.shape[1]} columns, images have {self.n} pixels")
        self.name = name
        self.a = matrix
        self.compute_dtype = torch.float32 if matrix.dtype in LOW_PRECISION else matrix.dtype
        if row_norms_sq is None:  # float64 sums, a chunk of rows at a time
            row_norms_sq = torch.cat([(matrix[rows].double() ** 2).sum(1) for rows in self._chunks()])
        self._row_norms_sq = row_norms_sq.to(self.compute_dtype)
        # (d, U) of A A^T in float64 where the construction gives them (ill_conditioned), on A's device
        self.known_eig = None if known_eig is None else tuple(t.to(matrix.device) for t in known_eig)
        self._known_cast = None

    def known_gram_eig(self):
        if self.known_eig is None:
            return None
        if self._known_cast is None:
            self._known_cast = tuple(t.to(self.compute_dtype) for t in self.known_eig)
        return self._known_cast

    def _chunks(self, size: int | None = None):
        return row_chunks(self.m, self.n, 8, size)

    def forward(self, x):
        flat = x.reshape(x.shape[0], -1)
        if flat.dtype == self.a.dtype:
            return flat @ self.a.T
        chunks = self._chunks(PRODUCT_CHUNK_BYTES)
        return torch.cat([flat @ self.a[rows].to(flat.dtype).T for rows in chunks], dim=1)

    def adjoint(self, y):
        if y.dtype == self.a.dtype:
            return (y @ self.a).view(y.shape[0], *self.shape)
        out = 0
        for rows in self._chunks(PRODUCT_CHUNK_BYTES):
            out = out + y[:, rows] @ self.a[rows].to(y.dtype)
        return out.view(y.shape[0], *self.shape)

    @property
    def row_norms_sq(self):
        return self._row_norms_sq

    def matrix(self):
        return self.a

    def exact_adjoint(self, y):
        return self.adjoint(y.to(device=self.a.device, dtype=torch.float64))  # float64, a chunk of rows at a time

    def gram_matrix(self):
        """A A^T in float64 from blocks of columns (exact products of the stored entries)."""
        return self._gram_by_blocks(torch.float64)

    def gram_matrix_float32(self):
        """A A^T from float32 products of blocks of columns, the blocks summed in float64 (at CelebA
        size every entry is within 2.2e-7 of the largest entry of the float64 product)."""
        return self._gram_by_blocks(torch.float32).float()

    def _gram_by_blocks(self, dtype):
        """The sum over blocks of columns of A of block block^T, each product in ``dtype``, in float64."""
        out = torch.zeros(self.m, self.m, dtype=torch.float64, device=self.a.device)
        for cols in row_chunks(self.n, self.m, dtype.itemsize):
            block = self.a[:, cols].to(dtype)
            out += block @ block.T
        return out

    def to(self, device=None, dtype=None):
        """The same matrix on ``device``, copied a chunk of rows at a time into a preallocated
        tensor (no transient of the whole matrix). A bfloat16 / float16 matrix keeps its storage
        when asked for float32 (its compute dtype)."""
        keep = dtype is None or (self.a.dtype in LOW_PRECISION and dtype == torch.float32)
        storage = self.a.dtype if keep else dtype
        target = self.a.device if device is None else torch.device(device)
        if storage == self.a.dtype and target == self.a.device:
            moved = self.a
        else:
            moved = torch.empty(self.a.shape, dtype=storage, device=target)
            for rows in self._chunks():
                moved[rows] = self.a[rows].to(device=target, dtype=storage)
        norms = self._row_norms_sq if storage == self.a.dtype else None  # a new storage dtype: new rounding
        out = DenseOperator(moved, self.shape, self.name, None if norms is None else norms.to(target), self.known_eig)
        return self.carry_gram_eig(out, target, out.compute_dtype)
