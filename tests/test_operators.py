import math

import numpy as np
import pytest
import scipy.fft
import scipy.linalg
import torch

from qcsbench.errors import ConfigError
from qcsbench.operators import correlated, dct, gaussian, ill_conditioned
from qcsbench.operators.dct import dct_matrix

SHAPE = (1, 8, 8)
N = 64
BUILDERS = {
    "gaussian": lambda m, **kw: gaussian(SHAPE, m, seed=3),
    "ill_conditioned": lambda m, **kw: ill_conditioned(SHAPE, m, seed=3, kappa=kw.get("kappa", 100.0)),
    "correlated": lambda m, **kw: correlated(SHAPE, m, seed=3, rho=0.4),
    "dct": lambda m, **kw: dct(SHAPE, m, seed=3),
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


@pytest.mark.parametrize("name", ["ill_conditioned", "correlated", "dct"])
@pytest.mark.parametrize("m", [0, N + 1])
def test_m_out_of_range_is_one_clear_sentence(name, m):
    with pytest.raises(ConfigError, match=rf"m={m} is not allowed for operator={name}: use an integer from 1 to {N}"):
        BUILDERS[name](m)
