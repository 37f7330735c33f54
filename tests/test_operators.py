import math

import numpy as np
import pytest
import scipy.fft
import scipy.linalg
import torch

from qcsbench.errors import ConfigError
from qcsbench.operators import (block, correlated, dct, gaussian, hadamard, ill_conditioned, partial_circulant,
                                partial_fourier)
from qcsbench.operators import base
from qcsbench.operators.dct import dct_matrix
from qcsbench.operators import dense
from qcsbench.operators.dense import ar1_factor, haar_orthonormal_columns
from qcsbench.operators.hadamard import fwht
from qcsbench.operators.krylov import lanczos_top

pytestmark = pytest.mark.fast

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


def test_ill_conditioned_with_float32_products_is_its_float64_construction(monkeypatch):
    """M <= N / 3: the QR for U, the Gram and the final product in float32 give the float64
    construction's A to about 3e-7 relative, and A A^T its closed-form eigendecomposition to about as much."""
    from qcsbench.operators import dense

    m = 16
    assert dense.product_dtype(m, N) == torch.float32 and dense.product_dtype(24, N) == torch.float64
    fast = ill_conditioned(SHAPE, m, seed=2, kappa=1000.0)
    monkeypatch.setattr(dense, "product_dtype", lambda m, n: torch.float64)
    exact = ill_conditioned(SHAPE, m, seed=2, kappa=1000.0)
    a, a64 = fast.matrix().double(), exact.matrix().double()
    assert not torch.equal(a, a64)
    assert float((a - a64).norm() / a64.norm()) < 2e-6
    d, u = exact.known_eig
    assert torch.equal(fast.known_eig[0], d) and torch.allclose(fast.known_eig[1], u, atol=2e-6, rtol=0)
    assert float((a @ a.T - (u * d) @ u.T).norm() / (a64 @ a64.T).norm()) < 2e-6
    d, u = fast.known_eig  # the float32 QR's U describes its own A as well
    assert float((a @ a.T - (u * d) @ u.T).norm() / (a64 @ a64.T).norm()) < 2e-6


def test_a_computed_eigendecomposition_is_torch_s_to_float64_rounding():
    """The operators' eigensolver (scipy's divide and conquer on the CPU) against torch.linalg.eigh."""
    op = gaussian(SHAPE, 40, seed=1).to(dtype=torch.float64)
    d, u = op.gram_eig()
    gram = op.matrix() @ op.matrix().T
    d_torch, u_torch = torch.linalg.eigh(gram)
    assert torch.allclose(d, d_torch.clamp_min(0), rtol=0, atol=1e-12 * float(d_torch[-1]))
    # eigenvectors up to their signs (both are unit vectors; the spectrum of a Gaussian A has no multiple values)
    assert torch.allclose((u * u_torch).sum(0).abs(), torch.ones(40, dtype=torch.float64), atol=1e-10)


def test_a_large_float32_operator_is_decomposed_in_float32_when_well_conditioned(monkeypatch):
    """Above FLOAT32_EIG_MIN_M rows a float32 A A^T is decomposed in float32: the functions of A A^T that
    EP applies stay within float32's own error of the float64 decomposition; an ill-conditioned one
    (where float32's eigenvalues would be off by eps32 * cond) is decomposed again in float64."""
    monkeypatch.setattr(base, "FLOAT32_EIG_MIN_M", 32)
    seen = []
    solve = base.symmetric_eig
    monkeypatch.setattr(base, "symmetric_eig", lambda gram: seen.append(gram.dtype) or solve(gram))
    op = gaussian((1, 16, 16), 64, seed=3)
    d, u = op.gram_eig()
    a64 = op.matrix().double()
    d64, u64 = torch.linalg.eigh(a64 @ a64.T)
    assert seen == [torch.float32] and d.dtype == u.dtype == torch.float32
    assert float(((d.double() - d64) / d64).abs().max()) < 1e-5
    h = torch.randn(3, 64, dtype=torch.float64)
    for f in (lambda x: 1 / (1 + x), lambda x: x / (0.01 + x)):
        exact = h @ (u64 * f(d64)) @ u64.T
        ours = h @ (u.double() * f(d.double())) @ u.double().T
        assert float((ours - exact).norm() / exact.norm()) < 1e-5

    seen.clear()
    scales = torch.logspace(0, -3, 64, dtype=torch.float64)  # singular values over 3 decades: cond 1e6
    q, _ = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64))
    steep = dense.DenseOperator((scales[:, None] * q @ torch.randn(64, 256, dtype=torch.float64)).float(), (1, 16, 16))
    d, _ = steep.gram_eig()
    a64 = steep.matrix().double()
    assert seen == [torch.float32, torch.float64]
    assert float(((d.double() - torch.linalg.eigvalsh(a64 @ a64.T)) / d.double()).abs().max()) < 1e-5


def test_correlated_is_the_ar1_cholesky_factor_around_a_gaussian_matrix():
    """A = L_M H L_N^T / sqrt(M) with L the Cholesky factor of rho^|i-j| (numpy's), H the seed's N(0, 1) draw."""
    m, rho = 16, 0.4
    op = correlated(SHAPE, m, seed=5, rho=rho)
    h = torch.randn(m, N, generator=torch.Generator().manual_seed(5), dtype=torch.float64).numpy()
    idx_m, idx_n = np.arange(m), np.arange(N)
    l_m = np.linalg.cholesky(rho ** np.abs(idx_m[:, None] - idx_m[None]))
    l_n = np.linalg.cholesky(rho ** np.abs(idx_n[:, None] - idx_n[None]))
    assert np.allclose(op.matrix().double().numpy(), l_m @ h @ l_n.T / math.sqrt(m), atol=1e-6)


@pytest.mark.parametrize("rho", [0.0, 0.4, 0.9])
def test_ar1_factor_has_covariance_rho_to_the_distance(rho):
    """L L^T = R[i, j] = rho^|i-j| for the recursion, also when the vector comes in chunks."""
    size = 40
    eye = torch.eye(size, dtype=torch.float64)
    whole = ar1_factor(eye, rho, dim=0)
    first = ar1_factor(eye[:13], rho, dim=0)
    chunked = torch.cat([first, ar1_factor(eye[13:], rho, dim=0, initial=first[-1])])
    idx = torch.arange(size, dtype=torch.float64)
    r = rho ** (idx[:, None] - idx[None, :]).abs()
    assert torch.allclose(whole @ whole.T, r, atol=1e-12)
    assert torch.allclose(chunked, whole, atol=1e-14)
    assert torch.allclose(ar1_factor(eye, rho, dim=1), whole.T, atol=1e-14)


def test_correlated_drawn_in_chunks_equals_one_chunk(monkeypatch):
    whole = correlated(SHAPE, 40, seed=2, rho=0.6).matrix()
    monkeypatch.setattr(base, "CHUNK_BYTES", 16 * 8 * N)  # 16 rows a chunk: three chunks
    assert torch.allclose(correlated(SHAPE, 40, seed=2, rho=0.6).matrix(), whole, atol=1e-7)


@pytest.mark.parametrize("name", ["gaussian", "ill_conditioned"])
def test_dense_draw_in_chunks_is_the_one_shot_draw(name, monkeypatch):
    """The chunked draw reproduces what one torch.randn of the whole matrix gave, bitwise."""
    m, seed = 48, 4
    g = torch.Generator().manual_seed(seed)
    if name == "gaussian":
        old = (torch.randn(m, N, generator=g, dtype=torch.float64) / math.sqrt(m)).float()
    else:  # U, then V from one QR of an N x M Gaussian matrix (the former construction)
        u = haar_orthonormal_columns(m, m, g)
        v = haar_orthonormal_columns(N, m, g).T
        decay = 100.0 ** (-torch.arange(m, dtype=torch.float64) / m)
        old = ((u * torch.sqrt(N * decay / decay.sum())) @ v).float()
    build = {"gaussian": lambda: gaussian(SHAPE, m, seed=seed),
             "ill_conditioned": lambda: ill_conditioned(SHAPE, m, seed=seed, kappa=100.0)}[name]
    monkeypatch.setattr(base, "CHUNK_BYTES", 16 * 8 * max(m, N))  # 16 rows a chunk
    op = build()
    tol = 0 if name == "gaussian" else 1e-6  # ill_conditioned: Cholesky-QR instead of Householder QR
    assert torch.allclose(op.matrix(), old, atol=tol, rtol=0)
    if name == "gaussian":
        assert torch.equal(op.row_norms_sq, (old.double() ** 2).sum(1).float())
    else:  # G drawn twice (too big to keep between the two passes) is the same G
        monkeypatch.setattr(dense, "KEEP_G_BYTES", 0)
        assert torch.equal(build().matrix(), op.matrix())


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


@pytest.mark.parametrize("name", BUILDERS)
def test_lanczos_lambda_max_matches_a_dense_eigendecomposition(name):
    """gram_max_eig (Lanczos, or a closed form) against eigvalsh of the float64 A A^T."""
    for dtype in (torch.float64, torch.float32):
        op = BUILDERS[name](24).to(dtype=dtype)
        expected = float(torch.linalg.eigvalsh(op.gram_matrix()).max())
        assert op.gram_max_eig() == pytest.approx(expected, rel=1e-6)


def test_lanczos_finds_the_top_of_a_clustered_spectrum():
    """A spectrum whose top two eigenvalues are 1e-4 apart, reached from a seeded start: the same every time."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(120, 120, generator=g, dtype=torch.float64))
    d = torch.linspace(0.0, 1.0, 120, dtype=torch.float64)
    d[-1] = d[-2] + 1e-4
    matrix = (q * d) @ q.T
    theta, y = lanczos_top(lambda v: matrix @ v, 120)
    assert theta == pytest.approx(float(d[-1]), rel=1e-10)
    assert float(y @ matrix @ y) == pytest.approx(float(d[-1]), rel=1e-10)
    assert lanczos_top(lambda v: matrix @ v, 120)[0] == theta


@pytest.mark.parametrize("name", BUILDERS)
def test_matrix_in_blocks_is_the_operator_applied_to_the_identity(name, monkeypatch):
    op = BUILDERS[name](24).to(dtype=torch.float64)
    dense = op.forward(torch.eye(N, dtype=torch.float64).view(N, *SHAPE)).T
    monkeypatch.setattr(base, "MATRIX_BLOCK", 5)  # 13 blocks of identity columns, the last one short
    assert torch.allclose(base.Operator.matrix(op), dense, atol=1e-12)
    assert torch.allclose(base.Operator.gram_matrix(op), dense @ dense.T, atol=1e-10)


def test_gram_eig_cache_round_trip_and_rejection(tmp_path, caplog):
    op = correlated(SHAPE, 20, seed=1)
    op.cache_dir = tmp_path
    d, u = op.gram_eig()
    files = list(tmp_path.glob("gram-eig-*.pt"))
    assert len(files) == 1
    again = correlated(SHAPE, 20, seed=1)
    again.cache_dir = tmp_path
    again._compute_gram_eig = lambda: pytest.fail("the cached eigendecomposition was not used")
    assert all(torch.equal(a, b) for a, b in zip(again.gram_eig(), (d, u)))
    # a file forged for another operator (the key it records does not match) is computed again
    state = torch.load(files[0], weights_only=True)
    forged = dict(state, d=torch.zeros_like(d), key=state["key"].replace('"seed": 1', '"seed": 9'))
    torch.save(forged, files[0])
    third = correlated(SHAPE, 20, seed=1)
    third.cache_dir = tmp_path
    with caplog.at_level("WARNING"):
        d3, _ = third.gram_eig()
    assert torch.equal(d3, d) and "belongs to another operator" in caplog.text
    files[0].write_bytes(b"truncated")  # unreadable: computed again
    fourth = correlated(SHAPE, 20, seed=1)
    fourth.cache_dir = tmp_path
    assert torch.equal(fourth.gram_eig()[0], d)
    other = correlated(SHAPE, 20, seed=2)  # another seed: another file
    other.cache_dir = tmp_path
    other.gram_eig()
    assert len(list(tmp_path.glob("gram-eig-*.pt"))) == 2


def test_gram_eig_cache_survives_moving_the_operator(tmp_path):
    op = gaussian(SHAPE, 20, seed=1)
    op.cache_dir = tmp_path
    moved = op.to("cpu", torch.float32)
    assert moved.describe() == op.describe() and moved.cache_dir == tmp_path
    moved.gram_eig()
    assert len(list(tmp_path.glob("gram-eig-*.pt"))) == 1


@pytest.mark.parametrize("dtype, bound", [("bfloat16", 2**-8), ("float16", 2**-11)])
def test_low_precision_storage_products_stay_within_the_rounding_bound(dtype, bound):
    """Every stored entry is A_ij (1 + delta), |delta| <= u; products in float32 are then within
    u sum_j |A_ij x_j| of the float32 operator's, and the operator reports its own row norms."""
    full = gaussian((1, 16, 16), 100, seed=2)
    low = gaussian((1, 16, 16), 100, seed=2, dtype=dtype)
    assert low.a.dtype == getattr(torch, dtype) and low.describe()["dtype"] == dtype
    x = torch.randn(3, 1, 16, 16)
    y = torch.randn(3, 100)
    a = full.matrix().double()
    assert low.forward(x).dtype == torch.float32
    bound_fwd = bound * (x.flatten(1).double().abs() @ a.abs().T) + 1e-5
    assert ((low.forward(x).double() - full.forward(x).double()).abs() <= bound_fwd).all()
    bound_adj = bound * (y.double().abs() @ a.abs()) + 1e-5
    assert ((low.adjoint(y).flatten(1).double() - full.adjoint(y).flatten(1).double()).abs() <= bound_adj).all()
    assert torch.allclose(low.row_norms_sq.double(), (low.a.double() ** 2).sum(1), rtol=1e-6)
    assert low.to("cpu", torch.float32).a.dtype == low.a.dtype  # stays compact where it is used


def test_storage_dtype_is_one_clear_sentence():
    with pytest.raises(ConfigError, match=r"operator.dtype=int8 is not allowed: use one of float32, bfloat16, float16"):
        gaussian(SHAPE, 10, dtype="int8")
