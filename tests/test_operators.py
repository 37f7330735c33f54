import math

import numpy as np
import pytest
import scipy.fft
import scipy.linalg
import torch

from qcsbench.errors import ConfigError
from qcsbench.operators import (block, correlated, dct, gaussian, hadamard, ill_conditioned, partial_circulant,
                                partial_fourier)
from qcsbench.operators.dct import dct_matrix
from qcsbench.operators.hadamard import fwht

SHAPE = (1, 8, 8)
N = 64
BUILDERS = {
    "gaussian": lambda m, **kw: gaussian(SHAPE, m, seed=3),
    "ill_conditioned": lambda m, **kw: ill_conditioned(SHAPE, m, seed=3, kappa=kw.get("kappa", 100.0)),
    "correlated": lambda m, **kw: correlated(SHAPE, m, seed=3, rho=0.4),
    "dct": lambda m, **kw: dct(SHAPE, m, seed=3),
    "partial_circulant": lambda m, **kw: partial_circulant(SHAPE, m, seed=3),
    "hadamard": lambda m, **kw: hadamard(SHAPE, m, seed=3),
    "partial_fourier": lambda m, **kw: partial_fourier(SHAPE, m, seed=3),
    "block": lambda m, **kw: block(SHAPE, m, seed=3, block=4),
}
# shapes where the structured operators pad (Hadamard: 5 x 6 -> 32; block: 180 = 5 blocks of 36 + 0,
# 3 x 5 x 6 = 90 = 2 blocks of 36 + 18) or meet odd sizes (Fourier: no Nyquist row in an odd dimension)
ODD_SHAPES = [(1, 5, 6), (3, 5, 6), (2, 7, 4)]
STRUCTURED = {
    "partial_circulant": lambda shape, m: partial_circulant(shape, m, seed=1),
    "hadamard": lambda shape, m: hadamard(shape, m, seed=1),
    "partial_fourier": lambda shape, m: partial_fourier(shape, m, seed=1),
    "block": lambda shape, m: block(shape, m, seed=1, block=6),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_adjoint_identity(name):
    op = BUILDERS[name](24).to(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, *SHAPE, generator=g, dtype=torch.float64)
    y = torch.randn(5, 24, generator=g, dtype=torch.float64)
    lhs = (op.forward(x) * y).sum(1)
    rhs = (x * op.adjoint(y)).flatten(1).sum(1)
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", BUILDERS)
def test_row_norms_match_the_matrix(name):
    op = BUILDERS[name](24).to(dtype=torch.float64)
    a = op.matrix()
    assert a.shape == (24, N)
    assert torch.allclose(op.row_norms_sq, (a**2).sum(1), rtol=1e-5)
    # the matrix really is the operator
    x = torch.randn(3, *SHAPE, dtype=torch.float64)
    assert torch.allclose(op.forward(x), x.flatten(1) @ a.T, atol=1e-10)


@pytest.mark.parametrize("name", BUILDERS)
def test_gram_eigendecomposition(name):
    op = BUILDERS[name](24).to(dtype=torch.float64)
    a = op.matrix()
    d, u = op.gram_eig()
    u = torch.eye(24, dtype=torch.float64) if u is None else u
    assert torch.allclose((u * d) @ u.T, a @ a.T, atol=1e-5)


@pytest.mark.parametrize("kappa", [1.0, 10.0, 1000.0])
def test_ill_conditioned_spectrum(kappa):
    m = 32
    a = ill_conditioned(SHAPE, m, seed=1, kappa=kappa).matrix().double()
    eig = torch.linalg.eigvalsh(a @ a.T)
    assert float((a**2).sum()) == pytest.approx(N, rel=1e-5)
    assert float(eig.max() / eig.min()) == pytest.approx(kappa ** ((m - 1) / m), rel=1e-3)
    if kappa == 1.0:  # row-orthogonal: A A^T = (N/M) I
        assert torch.allclose(a @ a.T, torch.eye(m, dtype=torch.float64) * N / m, atol=1e-5)


def test_correlated_uses_true_matrix_square_roots():
    m, rho = 16, 0.4
    op = correlated(SHAPE, m, seed=5, rho=rho)
    h = torch.randn(m, N, generator=torch.Generator().manual_seed(5), dtype=torch.float64).numpy()
    idx_m, idx_n = np.arange(m), np.arange(N)
    r_m = rho ** np.abs(idx_m[:, None] - idx_m[None])
    r_n = rho ** np.abs(idx_n[:, None] - idx_n[None])
    expected = np.real(scipy.linalg.sqrtm(r_m)) @ h @ np.real(scipy.linalg.sqrtm(r_n)) / math.sqrt(m)
    assert np.allclose(op.matrix().double().numpy(), expected, atol=1e-5)


def test_dct_is_orthonormal_dct_ii_and_row_orthogonal():
    d = dct_matrix(8)
    v = torch.randn(8, dtype=torch.float64)
    assert np.allclose((d @ v).numpy(), scipy.fft.dct(v.numpy(), norm="ortho"))
    op = dct(SHAPE, 20, seed=2).to(dtype=torch.float64)
    a = op.matrix()
    assert torch.allclose(a @ a.T, torch.eye(20, dtype=torch.float64) * N / 20, atol=1e-5)
    assert not hasattr(op, "a")  # matrix-free: no M x N matrix is stored


def test_same_seed_same_matrix_different_seed_different_matrix():
    assert torch.equal(gaussian(SHAPE, 10, seed=7).matrix(), gaussian(SHAPE, 10, seed=7).matrix())
    assert not torch.equal(gaussian(SHAPE, 10, seed=7).matrix(), gaussian(SHAPE, 10, seed=8).matrix())


@pytest.mark.parametrize("name", ["ill_conditioned", "correlated", "dct", "partial_circulant", "hadamard",
                                  "partial_fourier", "block"])
@pytest.mark.parametrize("m", [0, N + 1])
def test_m_out_of_range_is_one_clear_sentence(name, m):
    with pytest.raises(ConfigError, match=rf"m={m} is not allowed for operator={name}: use an integer from 1 to {N}"):
        BUILDERS[name](m)


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_operators_on_any_shape(name, shape):
    """Adjointness, row norms, A A^T and its eigendecomposition against the dense matrix, in float64."""
    n = math.prod(shape)
    m = n // 2 + 1
    op = STRUCTURED[name](shape, m).to(dtype=torch.float64)
    a = torch.stack([op.forward(e.view(1, *shape))[0] for e in torch.eye(n, dtype=torch.float64)], dim=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    y = torch.randn(3, m, generator=g, dtype=torch.float64)
    assert torch.allclose(op.adjoint(y).flatten(1), y @ a, atol=1e-10)
    assert torch.allclose(op.row_norms_sq, (a**2).sum(1), atol=1e-10)
    assert torch.allclose(op.gram_matrix(), a @ a.T, atol=1e-10)
    d, u = op.gram_eig()
    u = torch.eye(m, dtype=torch.float64) if u is None else u
    assert torch.allclose((u * d) @ u.T, a @ a.T, atol=1e-8)


@pytest.mark.parametrize("name", ["hadamard", "partial_fourier", "block"])
def test_orthonormal_transforms_are_row_orthogonal_without_padding(name):
    op = BUILDERS[name](24).to(dtype=torch.float64)
    a = op.matrix()
    # 1e-6: the block operator's Phi is drawn in float64 and stored in float32, as the DCT's matrices
    assert torch.allclose(a @ a.T, torch.eye(24, dtype=torch.float64) * N / 24, atol=1e-6)
    assert op.gram_eig()[1] is None  # the closed form: EP filters without an M x M matrix
    assert not hasattr(op, "a")


def test_fwht_is_the_sylvester_hadamard_matrix():
    h = torch.tensor(scipy.linalg.hadamard(16), dtype=torch.float64) / 4
    v = torch.randn(3, 16, dtype=torch.float64)
    assert torch.allclose(fwht(v), v @ h.T, atol=1e-12)


def test_partial_circulant_is_a_subsampled_circular_convolution():
    op = partial_circulant(SHAPE, 20, seed=4).to(dtype=torch.float64)
    taps, signs = op.taps.numpy(), op.signs.numpy()
    c = scipy.linalg.circulant(taps)  # c[i, j] = taps[(i - j) mod N]
    expected = c[op.rows.numpy()] * signs[None, :] / math.sqrt(20)
    assert np.allclose(op.matrix().numpy(), expected, atol=1e-10)


def test_partial_fourier_rows_are_real_and_imaginary_dft_parts():
    shape = (1, 4, 6)
    op = partial_fourier(shape, 24, seed=0).to(dtype=torch.float64)  # all rows: an orthogonal transform
    a = op.matrix().numpy()
    assert np.allclose(a @ a.T, np.eye(24), atol=1e-10)
    x = np.random.default_rng(0).standard_normal(shape)
    coeffs = np.fft.fft2(x[0], norm="ortho").flatten()
    y = a @ x.flatten()
    # DC, (0, 3), (2, 0), (2, 3) are their own mirrors: real; every other coefficient appears twice
    assert set(np.round(y, 8)) >= {np.round(coeffs[0].real, 8), np.round(coeffs[3].real, 8)}
    assert np.isclose((y**2).sum(), (np.abs(coeffs) ** 2).sum())


def test_block_operator_measures_permuted_blocks_with_one_orthonormal_phi():
    op = block((1, 4, 4), 6, seed=0, block=2).to(dtype=torch.float64)  # 4 blocks of 4 pixels, 2 + 2 + 1 + 1 rows
    assert op.blocks == 4 and op.rows_per_block == 2
    phi = op.phi.numpy()
    assert np.allclose(phi @ phi.T, np.eye(2), atol=1e-6)
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    v = x.flatten()[op.permutation].view(4, 4).numpy()
    expected = np.concatenate([phi @ v[0], phi @ v[1], phi[:1] @ v[2], phi[:1] @ v[3]]) * math.sqrt(16 / 6)
    assert np.allclose(op.forward(x)[0].numpy(), expected, atol=1e-10)


def test_block_size_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match=r"operator.block=0 is not allowed: use a positive integer"):
        block(SHAPE, 10, block=0)


@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_operators_are_determined_by_their_seed(name):
    shape = (1, 5, 6)
    assert torch.equal(STRUCTURED[name](shape, 12).matrix(), STRUCTURED[name](shape, 12).matrix())
    other = {"partial_circulant": partial_circulant, "hadamard": hadamard, "partial_fourier": partial_fourier,
             "block": lambda s, m, seed: block(s, m, seed=seed, block=6)}[name](shape, 12, seed=2)
    assert not torch.equal(STRUCTURED[name](shape, 12).matrix(), other.matrix())


@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_operators_in_float32_agree_with_float64(name):
    op32 = STRUCTURED[name]((3, 5, 6), 40)
    op64 = op32.to(dtype=torch.float64)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    y32 = op32.forward(x.float())
    assert y32.dtype == torch.float32
    assert torch.allclose(y32.double(), op64.forward(x), rtol=1e-4, atol=1e-4)
    assert op32.adjoint(y32).dtype == torch.float32
