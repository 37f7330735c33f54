"""Exact posterior samples for a Gaussian-mixture prior and the quantized Gaussian channel.

The model every method of the benchmark works with, written for one image of N pixels:

    x ~ p(x) = sum_k pi_k N(mu_k, C_k),    v = A x + n,  n ~ N(0, s^2 I_M),

and the channel reports only the bin [l_m, u_m) that each v_m fell in (1 bit: [0, inf) or
(-inf, 0); Q bits: the quantizer's cell; with dither, the cell shifted back by the dither).
The likelihood is p(y | x) = prod_m [Phi((u_m - a_m^T x) / s) - Phi((l_m - a_m^T x) / s)],
the same bins the channel's ``log_likelihood`` scores. Without quantization l = u = y and v = y
is observed outright.

Gibbs sampling with data augmentation (Albert & Chib, JASA 1993) runs on (v, k, x):

  1. v | x, y: independent over m, v_m ~ N(a_m^T x, s^2) truncated to [l_m, u_m).
  2. k | v:    P(k | v) proportional to pi_k N(v; A mu_k, S_k),   S_k = A C_k A^T + s^2 I_M
               (x integrated out of the linear Gaussian model of component k).
  3. x | k, v: N(mu_k + G_k (v - A mu_k),  C_k - G_k A C_k),     G_k = C_k A^T S_k^-1
               (the Kalman / Gaussian conditioning formula).

Steps 2 and 3 together draw (k, x) from p(k, x | v) exactly, and v given x does not depend on k,
so every sweep leaves the joint posterior p(v, k, x | y) invariant; its x-marginal is p(x | y).
Chains start from prior draws and are run ``sweeps`` times; the final states of independent
chains are the samples, so their Monte Carlo error is the plain sample standard error.
Without quantization v = y is known, steps 2-3 alone are exact, and no sweeps are needed.

Everything runs in float64, vectorised over chains; the per-component matrices (the Cholesky
factor of S_k, the gain G_k, a square root of the conditional covariance) are formed once.
"""
from __future__ import annotations

import math

import torch

from qcsbench.channels import GaussianNoise, UniformQuantizer
from qcsbench.channels.interval import log_normal_pdf
from qcsbench.priors import GaussianMixturePrior
from qcsbench.problem import Problem

# exp(log p) is a normal float64 above this; below it the inverse CDF starts from the tail asymptote
_LOG_P_NORMAL = -700.0
_NEWTON_STEPS = 6


def ndtri_log(log_p: torch.Tensor) -> torch.Tensor:
    """The t with log Phi(t) = log_p, for any log_p <= 0 (t down to about -sqrt(-2 log_p)).

    Where p = exp(log_p) is representable the ordinary inverse CDF is exact. Further out,
    start from t = -sqrt(-2 log_p) and take Newton steps on f(t) = log Phi(t) - log_p, with
    f'(t) = phi(t) / Phi(t): log Phi is concave and increasing, so the iterates approach the
    root monotonically from the left, quadratically once close.
    """
    t = torch.special.ndtri(torch.exp(log_p))
    far = log_p <= _LOG_P_NORMAL
    if bool(far.any()):
        target = log_p[far]
        tail = -torch.sqrt(-2.0 * target)
        for _ in range(_NEWTON_STEPS):
            log_cdf = torch.special.log_ndtr(tail)
            tail = tail - (log_cdf - target) * torch.exp(log_cdf - log_normal_pdf(tail))
        t = t.masked_scatter(far, tail)
    return t


def truncated_normal(mean: torch.Tensor, std, lower: torch.Tensor, upper: torch.Tensor,
                     uniform: torch.Tensor) -> torch.Tensor:
    """Draws of N(mean, std^2) restricted to [lower, upper) by the inverse CDF, in log space.

    With a = (l - mean) / std, b = (u - mean) / std and U uniform on (0, 1), the standardised draw t
    solves Phi(t) = (1 - U) Phi(a) + U Phi(b), i.e. log Phi(t) = logaddexp(log(1 - U) + log Phi(a),
    log U + log Phi(b)). Where the bin lies mostly above zero (a + b > 0) we draw -t from [-b, -a)
    instead, so the CDF values involved are lower-tail ones, which log_ndtr keeps to full relative
    precision however far out the bin is (30 or 3000 standard deviations).
    """
    a, b = (lower - mean) / std, (upper - mean) / std
    flip = a + b > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_p = torch.logaddexp(torch.log1p(-uniform) + torch.special.log_ndtr(lo),
                            torch.log(uniform) + torch.special.log_ndtr(hi))
    t = torch.minimum(torch.maximum(ndtri_log(log_p), lo), hi)  # rounding never leaves the bin
    return mean + std * torch.where(flip, -t, t)


def mixture_draws(prior: GaussianMixturePrior, n: int, g: torch.Generator) -> torch.Tensor:
    """n draws from the prior itself, (n, N) in float64: k ~ pi, then mu_k + U_k diag(sqrt(lam_k)) eps."""
    f64 = torch.float64
    k = torch.multinomial(torch.exp(prior.log_weights.to(f64)), n, replacement=True, generator=g)
    eps = torch.randn(n, prior.means.shape[1], generator=g, dtype=f64)
    roots_t = (prior.eigvecs.to(f64) * prior.eigvals.to(f64).sqrt().unsqueeze(1)).transpose(1, 2)
    return (prior.means.to(f64).unsqueeze(1) + eps @ roots_t)[k, torch.arange(n)]


class GibbsPosterior:
    """Exact posterior sampler for ``prior`` and a single-image ``problem`` (batch of one).

    The channel must be a UniformQuantizer or GaussianNoise with noise_std > 0 (the augmented
    latent v needs a Gaussian noise of positive width); the operator any, used as its dense matrix.
    """

    def __init__(self, prior: GaussianMixturePrior, problem: Problem):
        channel = problem.channel
        if not isinstance(channel, (UniformQuantizer, GaussianNoise)):
            raise ValueError(f"the exact posterior sampler supports the uniform quantizer and Gaussian noise, "
                             f"not channel {channel.name!r}.")
        if not channel.noise_std > 0:
            raise ValueError("the exact posterior sampler needs noise_std > 0.")
        if problem.batch_size != 1:
            raise ValueError(f"the exact posterior sampler takes one image, got a batch of {problem.batch_size}.")
        f64 = torch.float64
        self.prior = prior
        self.shape = problem.shape
        self.s = channel.noise_std
        self.a = problem.operator.matrix().to(f64)  # (M, N)
        meas = problem.measurement.to(dtype=f64)
        self.lower, self.upper = meas.lower[0], meas.upper[0]  # (M,)
        self.observed = bool(torch.equal(self.lower, self.upper))  # unquantized: v = y is known
        self.log_weights = prior.log_weights.to(f64)
        self.means = prior.means.to(f64)  # (K, N)
        u, lam = prior.eigvecs.to(f64), prior.eigvals.to(f64)
        cov = (u * lam.unsqueeze(1)) @ u.transpose(1, 2)  # C_k = U_k diag(lam_k) U_k^T
        ac = self.a @ cov  # (K, M, N): A C_k
        eye = torch.eye(self.a.shape[0], dtype=f64)
        s_cov = ac @ self.a.T + self.s**2 * eye  # S_k
        self.chol = torch.linalg.cholesky(s_cov)
        self.gain_t = torch.cholesky_solve(ac, self.chol)  # S_k^-1 A C_k = G_k^T, (K, M, N)
        post = cov - ac.transpose(1, 2) @ self.gain_t  # C_k - G_k A C_k
        w, vec = torch.linalg.eigh(0.5 * (post + post.transpose(1, 2)))
        self.root_t = (vec * w.clamp_min(0).sqrt().unsqueeze(1)).transpose(1, 2)  # R_k^T, R_k R_k^T = post
        self.mean_z = self.means @ self.a.T  # (K, M): A mu_k
        self.log_det = 2 * torch.log(torch.diagonal(self.chol, dim1=1, dim2=2)).sum(1)  # log |S_k|

    def component_log_weights(self, v: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(v; A mu_k, S_k) for each chain and component, (C, K)."""
        r = (v.unsqueeze(0) - self.mean_z.unsqueeze(1)).transpose(1, 2)  # (K, M, C)
        white = torch.linalg.solve_triangular(self.chol, r, upper=False)
        m = self.a.shape[0]
        log_norm = -0.5 * ((white * white).sum(1) + self.log_det[:, None] + m * math.log(2 * math.pi))
        return (self.log_weights[:, None] + log_norm).T

    def draw_x(self, v: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """(k, x) ~ p(k, x | v) for each chain (steps 2 and 3); returns x, (C, N)."""
        k = torch.multinomial(torch.softmax(self.component_log_weights(v), dim=1), 1, generator=g)[:, 0]
        x = torch.randn(v.shape[0], self.means.shape[1], generator=g, dtype=v.dtype)  # eps, then x in place
        for j in range(len(self.means)):  # the chains in component j, by two products
            rows = (k == j).nonzero()[:, 0]
            x[rows] = self.means[j] + (v[rows] - self.mean_z[j]) @ self.gain_t[j] + x[rows] @ self.root_t[j]
        return x

    def draw_v(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """v ~ p(v | x, y): the latent pre-quantizer values in their bins (step 1)."""
        u = torch.rand(x.shape[0], self.a.shape[0], generator=g, dtype=x.dtype).clamp_min(1e-300)  # U = 0: t = -inf
        return truncated_normal(x @ self.a.T, self.s, self.lower, self.upper, u)

    def sample(self, num_samples: int, generator: torch.Generator, sweeps: int = 100,
               start: torch.Tensor | None = None) -> torch.Tensor:
        """``num_samples`` independent chains, each run ``sweeps`` times from a prior draw (or from
        ``start``, earlier output to continue); their final states, shape (num_samples, *shape).
        Without quantization the draws are exact at once."""
        if self.observed:
            v = self.lower.expand(num_samples, -1)
            return self.draw_x(v, generator).view(num_samples, *self.shape)
        x = mixture_draws(self.prior, num_samples, generator) if start is None else start.reshape(num_samples, -1)
        for _ in range(sweeps):
            x = self.draw_x(self.draw_v(x, generator), generator)
        return x.view(num_samples, *self.shape)
