"""Dense random sensing matrices: Gaussian, ill-conditioned, correlated (docs/math.md §5).

Each is drawn in float64 on the CPU from its own seed, so every method, batch size and
device sees the same A. The matrix is drawn a chunk of rows at a time into its float32
(or bfloat16 / float16) storage: no float64 copy of the whole matrix is ever made.
"""
from __future__ import annotations

import math

import scipy.linalg
import scipy.signal
import torch

from qcsbench.operators.base import SEED, DenseOperator, check_m, chunk_rows, row_chunks  # noqa: F401
from qcsbench.settings import choice, integer, number, settings

STORAGE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def with_settings(op: DenseOperator, **settings) -> DenseOperator:
    op.settings = settings
    return op


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_rows(rows: int, columns: int, g: torch.Generator):
    """Chunks of a rows x columns float64 N(0, 1) matrix, in order: together exactly the values of
    torch.randn(rows, columns, generator=g), each chunk a multiple of 16 values (torch's CPU
    randn fills blocks of 16, so the chunked draw is the one-shot one)."""
    for chunk in row_chunks(rows, columns):
        yield chunk, torch.randn(chunk.stop - chunk.start, columns, generator=g, dtype=torch.float64)


def haar_orthonormal_columns(n: int, k: int, g: torch.Generator, work: torch.dtype = torch.float64) -> torch.Tensor:
    """An n x k float64 matrix with orthonormal columns, Haar distributed (QR with sign fix) from a
    float64 draw; ``work``: the dtype of the QR (float32: orthonormal to ~1e-6, in half the time)."""
    q, r = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64).to(work))
    return (q * torch.sign(torch.diagonal(r)).unsqueeze(0)).double()


@settings("operator", seed=SEED, max_oversampling=integer(1), dtype=choice(*STORAGE))
def gaussian(shape, m: int, seed: int = 0, max_oversampling: int = 16, dtype: str = "float32") -> DenseOperator:
    """A_ij ~ N(0, 1/M), so E ||a_m||^2 = N/M. M may exceed N (oversampled 1-bit CS). ``dtype``:
    the storage of A (bfloat16 / float16 halve its memory; products stay in float32)."""
    n = math.prod(shape)
    check_m(m, n, max_oversampling * n, "gaussian")
    a = torch.empty(m, n, dtype=STORAGE[dtype])
    for rows, block in gaussian_rows(m, n, _generator(seed)):
        a[rows] = block / math.sqrt(m)
    settings = dict(seed=seed) if dtype == "float32" else dict(seed=seed, dtype=dtype)
    return with_settings(DenseOperator(a, shape, "gaussian"), **settings)


# ill_conditioned keeps its N x M Gaussian G between its two passes up to this size (CelebA 64 at
# M = 4000: 197 MB in float32), and draws it twice above it.
KEEP_G_BYTES = 1 << 30


def product_dtype(m: int, n: int) -> torch.dtype:
    """The dtype of ill_conditioned's QR for U and its two M^2 N products: float32 when the N x M
    Gaussian G is well conditioned (cond(G^T G) <= 14 for M <= N / 3, so the rows of V are
    orthonormal to ~1e-6 and A is its float64 construction to ~1e-6 relative: measured,
    docs/math.md §5), else float64 (near M = N, cond(G^T G) grows like N^2)."""
    return torch.float32 if 3 * m <= n else torch.float64


@settings("operator", seed=SEED, kappa=number(1))
def ill_conditioned(shape, m: int, seed: int = 0, kappa: float = 1000.0) -> DenseOperator:
    """A = U diag(d) V with Haar U, V and cond(A A^T) = kappa^((M-1)/M); ||A||_F^2 = N.

    V is the transposed Q factor of G = Q R (G an N x M Gaussian matrix, R with a positive
    diagonal), taken without forming Q: G^T G = R^T R gives R by Cholesky and
    A = (U diag(d) R^(-T)) G^T, in chunks of G's rows. A A^T = U diag(d^2) U^T is known in
    closed form and kept, so no eigendecomposition is ever computed for it (it describes the
    float64 construction; the stored float32 A is its rounding, ~1e-7 relative, or ~3e-7 where the
    products are taken in float32, see product_dtype)."""
    n = math.prod(shape)
    check_m(m, n, n, "ill_conditioned")
    g = _generator(seed)
    work = product_dtype(m, n)
    u = haar_orthonormal_columns(m, m, g, work)
    decay = kappa ** (-torch.arange(m, dtype=torch.float64) / m)
    d = torch.sqrt(n * decay / decay.sum())
    start = g.get_state()
    gram = torch.zeros(m, m, dtype=work)
    kept = [] if n * m * work.itemsize <= KEEP_G_BYTES else None  # G's chunks, so as not to draw them twice
    for cols, block in gaussian_rows(n, m, g):
        block = block.to(work)
        gram += block.T @ block
        if kept is not None:
            kept.append((cols, block))
    r_t = torch.linalg.cholesky(gram.double())  # lower: G^T G = R^T R
    b = scipy.linalg.solve_triangular(r_t.numpy(), (u * d).T.numpy(), trans="T", lower=True).T  # U diag(d) R^(-T)
    b = torch.from_numpy(b).to(work)
    a = torch.empty(m, n, dtype=torch.float32)
    if kept is None:
        g.set_state(start)  # the same G again, a chunk of its rows (columns of A) at a time
        kept = ((cols, block.to(work)) for cols, block in gaussian_rows(n, m, g))
    for cols, block in kept:
        a[:, cols] = b @ block.T
    op = DenseOperator(a, shape, "ill_conditioned", known_eig=((d**2).flip(0), u.flip(1)))  # ascending, as gram_eig
    return with_settings(op, seed=seed, kappa=float(kappa))


def ar1_factor(x: torch.Tensor, rho: float, dim: int, initial=None) -> torch.Tensor:
    """L x along ``dim`` for the Cholesky factor L of R[i, j] = rho^|i-j| (float64):
    (L x)_0 = x_0, (L x)_i = rho (L x)_(i-1) + sqrt(1 - rho^2) x_i. ``initial``: the (L x) value
    just before x's first entry when x is a later chunk of a longer vector (None: x starts it)."""
    scale = math.sqrt(1 - rho**2)
    x = x.numpy().copy()
    index = [slice(None)] * x.ndim
    index[dim] = slice(0, 1)
    if initial is None:
        x[tuple(index)] /= scale  # the first entry is x_0 itself
        zi = None
    else:
        zi = rho * initial.numpy()
        zi = zi.reshape([1 if i == dim else s for i, s in enumerate(x.shape)])
    out = scipy.signal.lfilter([scale], [1.0, -rho], x, axis=dim, zi=zi)
    return torch.from_numpy(out[0] if zi is not None else out)


@settings("operator", seed=SEED, rho=number(0, 1, hi_open=True))
def correlated(shape, m: int, seed: int = 0, rho: float = 0.4) -> DenseOperator:
    """A = L_M H L_N^T / sqrt(M), R = L L^T with R[i, j] = rho^|i-j| (the AR(1) Cholesky factor,
    applied by a recursion in O(size)), H i.i.d. N(0, 1): A has the distribution of
    R_M^(1/2) H R_N^(1/2) / sqrt(M) (both have covariance R_N (x) R_M / M), drawn in chunks of rows."""
    n = math.prod(shape)
    check_m(m, n, n, "correlated")
    a = torch.empty(m, n, dtype=torch.float32)
    previous = None  # the last row of L_M (H L_N^T) so far, in float64
    for rows, block in gaussian_rows(m, n, _generator(seed)):
        filtered = ar1_factor(ar1_factor(block, rho, dim=1), rho, dim=0, initial=previous)
        previous = filtered[-1]
        a[rows] = filtered / math.sqrt(m)
    return with_settings(DenseOperator(a, shape, "correlated"), seed=seed, rho=float(rho))
