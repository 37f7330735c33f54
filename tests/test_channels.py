import mpmath
import pytest
import torch

from qcsbench.channels import GaussianNoise, UniformQuantizer
from qcsbench.channels.interval import truncated_normal_moments
from qcsbench.errors import ConfigError
from qcsbench.randomness import MEASUREMENT, ImageRandom

pytestmark = pytest.mark.fast

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


# --- narrow bins and the known dither ---------------------------------------------------

def exact_log_prob_mp(z, lower, upper, s):
    """log[Phi(b) - Phi(a)], a = (l-z)/s, b = (u-z)/s, in 60-digit arithmetic from the float values as
    given; an upper-tail bin as Phi(-a) - Phi(-b), whose terms are small (mpmath keeps relative precision)."""
    mpmath.mp.dps = 60
    z, s = mpmath.mpf(float(z)), mpmath.mpf(float(s))
    a, b = (mpmath.mpf(float(lower)) - z) / s, (mpmath.mpf(float(upper)) - z) / s
    p = mpmath.ncdf(-a) - mpmath.ncdf(-b) if a > 0 else mpmath.ncdf(b) - mpmath.ncdf(a)
    return float(mpmath.log(p))


@pytest.mark.parametrize("beta", [10.0, 50.0, 200.0])
def test_16_bit_bins_keep_their_probability_in_float32(beta):
    """A 16-bit bin is 2^-16 of the range wide; at QCS-SGM's first levels (s ~ 100) the float32
    edges, standardised in float32, used to round together: log P = -inf and a NaN gradient."""
    q = UniformQuantizer(16, noise_std=0.05)
    z0 = 0.6 * torch.randn(2, M, generator=torch.Generator().manual_seed(0))
    meas = measure(q, z0, range(2))
    extra = torch.full((M,), beta**2 * 3.92)  # beta^2 ||a_m||^2 with N / M = 3.92, as on MNIST at M = 200
    s = (q.noise_std**2 + extra[0].double()).sqrt()
    z = 3 * float(s) * torch.randn(2, M, generator=torch.Generator().manual_seed(1))  # a state at level beta
    log_p, g = q.log_likelihood(meas, z, extra), q.grad(meas, z, extra)
    assert log_p.dtype == g.dtype == torch.float32 and torch.isfinite(log_p).all() and torch.isfinite(g).all()
    for i in range(0, M, 5):
        args = (z[0, i], meas.lower[0, i], meas.upper[0, i], s)
        assert float(log_p[0, i]) == pytest.approx(exact_log_prob_mp(*args), rel=1e-6)
        assert float(g[0, i]) == pytest.approx(exact_grad_mp(*args), rel=1e-5, abs=1e-12)


def test_16_bit_tilted_moments_in_float32_sit_in_the_narrow_bin():
    """EP's tilted mean for a bin far narrower than the Gaussian is the bin's centre, also when
    the offset is large (the edges used to lose the bin in float32 before moving to float64)."""
    q = UniformQuantizer(16, noise_std=0.05)
    meas = measure(q, 0.6 * torch.randn(2, M, generator=torch.Generator().manual_seed(0)), range(2))
    offset = 2000 * torch.randn(2, M, generator=torch.Generator().manual_seed(1))  # float32 spacing > the bin
    mean, var = torch.zeros(2, M), torch.full((2, M), 1000.0**2)
    tilted_mean, tilted_var = q.tilted_moments(meas, offset, mean, var)
    lower, upper, off = meas.lower.double(), meas.upper.double(), offset.double()
    inner = torch.isfinite(lower) & torch.isfinite(upper)
    centre = (lower + upper) / 2 - off
    assert torch.isfinite(tilted_mean).all() and torch.isfinite(tilted_var).all()
    assert torch.allclose(tilted_mean.double()[inner], centre[inner], rtol=1e-6, atol=1e-6)
    # and the variance of a uniform distribution over the bin (the Gaussian is flat across it)
    assert torch.allclose(tilted_var.double()[inner], (upper - lower)[inner] ** 2 / 12, rtol=1e-4)


def exact_truncated_variance_mp(a, b):
    """Var[t | a <= t < b], t ~ N(0, 1), in 60-digit arithmetic (an upper-tail bin mirrored)."""
    mpmath.mp.dps = 60
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    if a > 0:
        a, b = -b, -a
    p = mpmath.ncdf(b) - mpmath.ncdf(a)
    r = (mpmath.npdf(a) - mpmath.npdf(b)) / p
    return float(1 + (a * mpmath.npdf(a) - b * mpmath.npdf(b)) / p - r * r)


@pytest.mark.parametrize("a", [-30.0, -3.0, 0.0, 2.0, 25.0])
def test_truncated_variance_of_narrow_bins(a):
    """From a tenth of a standard deviation down to 1e-10 wide, where the textbook formula's terms
    of size a^2 cancel to a result of size width^2 / 12."""
    widths = torch.tensor([1e-1, 1e-2, 3e-3, 2e-3, 1e-3, 1e-4, 1e-6, 1e-10], dtype=torch.float64)
    lower = torch.full_like(widths, a)
    _, var = truncated_normal_moments(torch.zeros_like(widths), torch.ones_like(widths), lower, lower + widths)
    for w, v in zip(widths.tolist(), var.tolist()):
        assert v == pytest.approx(exact_truncated_variance_mp(a, (torch.tensor(a, dtype=torch.float64) + w).item()),
                                  rel=1e-5)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_dequantized_dither_is_in_the_units_of_the_measurement(bits):
    """With a known dither d the level of v + d, moved back by d, is the centre of v's bin:
    dequantizing then errs by delta / sqrt(12) (subtractive dither), not the sqrt(2) times
    larger error of a level that still carries d."""
    z = torch.randn(4, 4000, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    dithered, plain = (UniformQuantizer(bits, noise_std=0.05, dither=d) for d in (True, False))
    v = noisy(dithered, z, range(4))
    meas = measure(dithered, z, range(4))
    y = dithered.dequantize(meas)
    assert bool(((meas.lower <= y) & (y <= meas.upper)).all())
    inner = torch.isfinite(meas.lower) & torch.isfinite(meas.upper)
    assert torch.allclose(y[inner], ((meas.lower + meas.upper) / 2)[inner], atol=1e-12)
    rms = lambda y_: float(((y_ - v) ** 2).mean().sqrt())
    delta = dithered.step(v)  # the same step, from v, with and without dither
    assert rms(y) <= 1.05 * rms(plain.dequantize(measure(plain, z, range(4))))
    assert rms(y) == pytest.approx(float((delta**2).mean().sqrt()) / 12**0.5, rel=0.05)


def test_one_bit_grad_is_bitwise_the_two_edge_formula_in_float32():
    """The 1-bit gradient (one edge, the scaled complementary error function) gives the float32
    numbers of the general two-edge log-space formula it replaced, with and without dither."""
    from qcsbench.channels.interval import interval_grad

    g = torch.Generator().manual_seed(4)
    for dither in (False, True):
        q = UniformQuantizer(1, noise_std=0.05, dither=dither)
        meas = q.measure(torch.randn(4, 5000, generator=g), ImageRandom(0, range(4), MEASUREMENT))
        z = 3 * torch.randn(4, 5000, generator=g)
        extra = 10 ** (4 * torch.rand(5000, generator=g) - 3)  # s from 0.05 to 100
        zd = z.double()
        s = (extra.double() + q.noise_std**2).sqrt()
        two_edge = interval_grad((meas.lower.double() - zd) / s, (meas.upper.double() - zd) / s, s).float()
        assert torch.equal(q.grad(meas, z, extra), two_edge)
