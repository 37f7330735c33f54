import mpmath
import pytest
import torch

from qcsbench.channels import GaussianNoise, UniformQuantizer
from qcsbench.errors import ConfigError
from qcsbench.randomness import MEASUREMENT, ImageRandom

M = 50


def measure(q, z, indices, seed=0):
    return q.measure(z, ImageRandom(seed, indices, MEASUREMENT))


def noisy(q, z, indices, seed=0):
    """z + n recomputed from the same per-image streams the quantizer used."""
    return z + q.noise_std * ImageRandom(seed, indices, MEASUREMENT).randn(z.shape[1], dtype=z.dtype)


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
@pytest.mark.parametrize("rng_range", ["image", "batch"])
def test_noisy_measurement_lies_in_its_bin(bits, rng_range):
    q = UniformQuantizer(bits, noise_std=0.1, range=rng_range)
    z = 3 * torch.randn(6, M, dtype=torch.float64)
    meas = measure(q, z, range(6))
    v = noisy(q, z, range(6))
    assert bool(((meas.lower <= v) & (v < meas.upper)).all())
    assert all(len(torch.unique(row)) <= 2**bits for row in meas.y)
    if bits > 1:  # every level lies inside its own bin
        assert bool(((meas.lower <= meas.y) & (meas.y <= meas.upper)).all())


def test_one_bit_is_the_sign():
    q = UniformQuantizer(1, noise_std=0.05)
    z = torch.randn(4, M, dtype=torch.float64)
    meas = measure(q, z, range(4))
    v = noisy(q, z, range(4))
    assert torch.equal(meas.y, torch.where(v >= 0, 1.0, -1.0).double())
    assert torch.equal(meas.lower, torch.where(v >= 0, 0.0, -torch.inf).double())
    assert torch.equal(meas.upper, torch.where(v >= 0, torch.inf, 0.0).double())


def test_dithered_bins_contain_the_measurement():
    q = UniformQuantizer(2, noise_std=0.05, dither=True)
    z = torch.randn(4, M, dtype=torch.float64)
    meas = measure(q, z, range(4))
    v = noisy(q, z, range(4))
    assert bool(((meas.lower <= v) & (v < meas.upper)).all())
    undithered = measure(UniformQuantizer(2, noise_std=0.05), z, range(4))
    assert not torch.equal(meas.lower, undithered.lower)


def test_per_image_range_does_not_depend_on_the_batch():
    q = UniformQuantizer(3, noise_std=0.05)
    z = torch.randn(5, M, dtype=torch.float64) * torch.arange(1, 6, dtype=torch.float64)[:, None]
    together = measure(q, z, range(5))
    alone = measure(q, z[2:3], [2])
    assert torch.equal(together.y[2:3], alone.y)
    assert torch.equal(together.lower[2:3], alone.lower)
    # the reference code's batch-wide range does depend on the batch
    qb = UniformQuantizer(3, noise_std=0.05, range="batch")
    assert not torch.equal(measure(qb, z, range(5)).y[2:3], measure(qb, z[2:3], [2]).y)


@pytest.mark.parametrize("bits", [0, 17, 2.5])
def test_bits_out_of_range(bits):
    with pytest.raises(ConfigError, match=f"bits={bits} is not allowed: use an integer from 1 to 16"):
        UniformQuantizer(bits, noise_std=0.05)


# --- the likelihood and its gradient -------------------------------------------------

def exact_grad_mp(z, lower, upper, s):
    """d/dz log[Phi((u-z)/s) - Phi((l-z)/s)] in 800-digit arithmetic (an independent computation)."""
    mpmath.mp.dps = 800  # enough digits that 1 - Phi(40) is not lost
    z, s = mpmath.mpf(float(z)), mpmath.mpf(float(s))

    def pdf(t):
        return mpmath.npdf(t) if mpmath.isfinite(t) else mpmath.mpf(0)

    a = (mpmath.mpf(float(lower)) - z) / s
    b = (mpmath.mpf(float(upper)) - z) / s
    p = mpmath.ncdf(b) - mpmath.ncdf(a)
    return float((pdf(a) - pdf(b)) / (s * p))


def quantized_problem(bits, b=3, seed=0):
    q = UniformQuantizer(bits, noise_std=0.1)
    z = 2 * torch.randn(b, M, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return q, measure(q, z, range(b))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_grad_matches_float64_autograd_near_the_bins(bits):
    q, meas = quantized_problem(bits)
    extra = 0.3 * torch.rand(M, dtype=torch.float64)
    z = (meas.y + 0.2 * torch.randn_like(meas.y)).requires_grad_(True)
    s = (q.noise_std**2 + extra).sqrt()
    # independent log-likelihood: the plain difference of normal CDFs, differentiated by autograd
    logp = torch.log(torch.special.ndtr((meas.upper - z) / s) - torch.special.ndtr((meas.lower - z) / s))
    (auto,) = torch.autograd.grad(logp.sum(), z)
    assert torch.allclose(q.grad(meas, z.detach(), extra), auto, rtol=1e-8, atol=1e-10)
    assert torch.allclose(q.log_likelihood(meas, z.detach(), extra), logp.detach(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("bits", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("side", [-1.0, 1.0])
def test_grad_far_outside_the_bin_is_finite_and_exact(bits, dtype, side):
    """10 and 40 standard deviations outside the bin: the pull keeps growing, as it must."""
    q, meas = quantized_problem(bits)
    s = torch.tensor(0.1, dtype=torch.float64)
    for far in (10.0, 40.0):
        # a point `far` standard deviations beyond the finite edge on the chosen side
        edge, other = (meas.upper, meas.lower) if side > 0 else (meas.lower, meas.upper)
        edge = torch.where(torch.isfinite(edge), edge, other)
        z = edge + side * far * s
        g = q.grad(meas.to(dtype=dtype), z.to(dtype), 0.0)
        assert bool(torch.isfinite(g).all())
        for i in range(0, M, 7):
            expected = exact_grad_mp(z[0, i], meas.lower[0, i], meas.upper[0, i], s)
            tol = 1e-9 if dtype == torch.float64 else 2e-3
            assert float(g[0, i]) == pytest.approx(expected, rel=tol, abs=1e-6)
            inside = (meas.lower[0, i] <= z[0, i]) & (z[0, i] < meas.upper[0, i])
            if not inside:  # points above their bin are pulled down and vice versa
                assert (float(g[0, i]) < 0) == (float(z[0, i]) >= float(meas.upper[0, i]))


def test_unquantized_grad_and_log_likelihood_match_autograd():
    q = GaussianNoise(noise_std=0.2)
    z0 = torch.randn(3, M, dtype=torch.float64)
    meas = measure(q, z0, range(3))
    extra = torch.rand(M, dtype=torch.float64)
    z = torch.randn(3, M, dtype=torch.float64, requires_grad=True)
    dist = torch.distributions.Normal(z, (0.04 + extra).sqrt())
    logp = dist.log_prob(meas.y)
    (auto,) = torch.autograd.grad(logp.sum(), z)
    assert torch.allclose(q.grad(meas, z.detach(), extra), auto, rtol=1e-10)
    assert torch.allclose(q.log_likelihood(meas, z.detach(), extra), logp.detach(), rtol=1e-10)


def reference_formula(y, lower, upper, z, s, bits):
    """The QCS-SGM reference code's likelihood scores, written as that code writes them."""
    if bits == 1:
        phi_z = torch.clamp(torch.erfc(-z / (s * 2**0.5)) / 2, 1e-6, 1 - 1e-6)
        gauss = torch.exp(-z**2 / (2 * s**2)) / torch.sqrt(2 * torch.pi * s**2)
        return ((1 + y) / 2 / phi_z - (1 - y) / 2 / (1 - phi_z)) * gauss
    u_t, l_t = (z - upper) / s, (z - lower) / s
    gauss = (torch.exp(-u_t**2 / 2) - torch.exp(-l_t**2 / 2)) / (2 * torch.pi) ** 0.5 / s
    denom = torch.clamp(torch.erfc(-u_t / 2**0.5) / 2 - torch.erfc(-l_t / 2**0.5) / 2, -1, -1e-6)
    return gauss / denom


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_reference_clamps_reproduce_the_reference_formula(bits):
    q, meas = quantized_problem(bits)
    ref = UniformQuantizer(bits, noise_std=0.1, reference_clamps=True)
    s = torch.tensor(0.1, dtype=torch.float64)
    lower = meas.lower.clamp(-1e20, 1e20)
    upper = meas.upper.clamp(-1e20, 1e20)
    for shift in (0.0, 0.3, 1.0, 3.0):  # 3.0 is 30 s away: the clamps have taken over
        z = meas.y + shift * torch.randn_like(meas.y)
        expected = reference_formula(meas.y, lower, upper, z, s, bits)
        assert torch.allclose(ref.grad(meas, z, 0.0), expected, rtol=1e-6, atol=1e-8)
    # far from the bin the clamped pull collapses while the exact one grows
    z = torch.where(torch.isfinite(meas.upper), meas.upper + 4.0, meas.lower - 4.0)  # 40 s outside
    assert float(ref.grad(meas, z, 0.0).abs().max()) < 1e-3 < float(q.grad(meas, z, 0.0).abs().min())
