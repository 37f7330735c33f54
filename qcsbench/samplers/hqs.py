"""Half-quadratic splitting inside the reverse diffusion (DiffPIR, Zhu et al. 2023), VE form.

At each level sigma_t (one denoiser call each, so NFE = number of levels):

    x0_hat = D(x_t, sigma_t)                                   Tweedie estimate (the prior's step)
    x0     = argmin_x L(x) + (rho_t / 2) ||x - x0_hat||^2,     rho_t = lam / sigma_t^2   (the data step)
    eps    = (x_t - x0) / sigma_t
    x_{t-1} = x0 + sigma_{t-1} (sqrt(1 - zeta) eps + sqrt(zeta) noise)

L is a negative log-likelihood. DiffPIR writes the data term as ||y - Ax||^2 with
rho_t = lam sigma_n^2 / sigma_t^2; multiplying our L = ||y - Ax||^2 / (2 sigma_n^2) by
2 sigma_n^2 shows the two are the same lam. Writing rho_t on the NLL also covers data terms
without a noise level (the logistic channel). The last level returns x0 without re-noising.

Diff-OneBit and DiffPIR differ only in the data step, passed in as ``data_prox(x0_hat, rho)``.
"""
from __future__ import annotations

import math

import torch

from qcsbench.likelihood.data_term import nll_grad
from qcsbench.errors import ConfigError
from qcsbench.progress import steps


@torch.no_grad()
def hqs_diffusion(prior, x, sigmas, rng, data_prox, lam, zeta=1.0, progress=True, callback=None):
    """Run the loop from x = x_T (pure noise sigma_1 * eps); returns x0. ``callback`` sees each
    level's x and the prior's estimate x0_hat (``denoised``)."""
    sigmas = [float(s) for s in sigmas]
    shape = x.shape[1:]
    for i, sigma in enumerate(steps(sigmas, "hqs", progress)):
        x0_hat = prior.denoise(x, sigma)
        if callback is not None:
            callback(dict(i=i, sigma=sigma, x=x, denoised=x0_hat))
        x0 = data_prox(x0_hat, lam / sigma**2)
        if i == len(sigmas) - 1:
            return x0
        eps = (x - x0) / sigma
        x = x0 + sigmas[i + 1] * (math.sqrt(1 - zeta) * eps + math.sqrt(zeta) * rng.randn(*shape))


def stable_step(problem, extra_var: float = 0.0) -> float:
    """2 / Lip(grad L) with Lip(grad L) <= lambda_max(A A^T) c, c the channel's curvature bound
    (1 / s^2 for Gaussian noise of variance s^2, with or without bins): the largest step
    ``gradient_prox`` can take on every problem.

    Why it matters: a linearised proximal step scales an error along a direction of curvature h
    by (1 - eta h) / (1 + eta rho), and rho = lam / sigma_t^2 is ~0 at the first levels, so
    eta h > 2 makes it grow. A 1-bit bin hides a too-large step (past its single edge the pull
    vanishes); a bin with two edges does not: the step overshoots to beyond the far edge, which
    pulls back harder, and the iterate diverges within a few steps."""
    lip = problem.operator.gram_max_eig() * problem.channel.curvature_bound(extra_var)
    if not 0 < lip < float("inf"):
        raise ConfigError("method.surrogate_std=null is not allowed for a noiseless quantizer (its likelihood is a "
                          "step function, no gradient step is stable): set method.surrogate_std > 0.")
    return 2.0 / lip


def gradient_prox(problem, steps: int, step_size: float, extra_var: float = 0.0):
    """Approximate argmin_x L(x) + (rho/2)||x - x0_hat||^2 by ``steps`` linearised proximal steps
    from x0_hat: x <- argmin_u <grad L(x), u> + ||u - x||^2 / (2 eta) + (rho/2)||u - x0_hat||^2.
    The quadratic is handled exactly, so a large rho (small sigma_t) never makes a step unstable;
    only eta < 2 / Lip(grad L) matters (``stable_step``). extra_var widens the likelihood (noise
    variance noise_std^2 + extra_var): a smoother surrogate. Diff-OneBit's data step."""
    eta = float(step_size)

    def prox(x0_hat, rho):
        x = x0_hat
        for _ in range(steps):
            x = (x / eta + rho * x0_hat - nll_grad(problem, x, extra_var)) / (1 / eta + rho)
        return x

    return prox


def gaussian_prox(operator, y, noise_std: float):
    """The exact argmin_x ||y - A x||^2 / (2 s^2) + (rho/2)||x - x0_hat||^2
    = x0_hat + A^T (A A^T + rho s^2 I)^{-1} (y - A x0_hat), with A A^T = U diag(d) U^T cached
    by the operator. DiffPIR's data step."""
    d = operator.gram_eig()[0]
    var = noise_std**2

    def prox(x0_hat, rho):
        r = y - operator.forward(x0_hat)
        return x0_hat + operator.adjoint(operator.gram_filter(r, 1.0 / (d + rho * var)))

    return prox
