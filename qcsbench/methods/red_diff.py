"""RED-diff (Mardani, Song, Kautz, Vahdat, ICLR 2024; docs/math.md §6): variational inference with
q(x) = N(mu, sigma_q^2 I) at sigma_q = 0, which makes recovery a stochastic optimisation of mu by Adam.

One iteration per level of the descending ladder sigma_1 > ... > sigma_K (one denoiser call each, so
NFE = num_levels), on the VE ladder:

    eps ~ N(0, I),   x_t = mu + sigma_t eps,   eps_hat = (x_t - D(x_t, sigma_t)) / sigma_t
    g   = grad L(mu) + lam w(sigma_t) (eps_hat - eps)
    mu <- Adam(mu, g)

g is the gradient in mu of  L(mu) + lam w(sigma_t) <sg(eps_hat - eps), mu>  (sg: stop-gradient, so no
backward pass through the denoiser), L the channel's negative log-likelihood. w is the paper's
SNR-based weighting: its "linear" 1/sqrt(SNR_t) = sigma_t / alpha_t of a VP model is the VE sigma_t.
Adam's step is normalised element by element, so no problem makes it diverge and it needs no
stability bound; its state is per element, so an image's result does not depend on its batch.
"""
from __future__ import annotations

import math

import torch

from qcsbench.back_projection import matched_back_projection
from qcsbench.errors import ConfigError
from qcsbench.likelihood.data_term import nll_grad
from qcsbench.methods.base import Ladder, Method
from qcsbench.problem import Recovery
from qcsbench.progress import steps
from qcsbench.settings import LADDER, boolean, choice, descending_ladder, number, settings

# w(sigma), the paper's denoiser weightings (its code's denoise_term_weight), sigma = 1/sqrt(SNR)
WEIGHTINGS = {
    "linear": lambda s: s,
    "sqrt": math.sqrt,
    "square": lambda s: s * s,
    "log": math.log1p,
    "trunc_linear": lambda s: min(s, 1.0),
    "const": lambda s: 1.0,
}
INITS = ("back_projection", "zeros")
BETAS = (0.9, 0.99)  # the paper's code: a shorter second-moment memory than Adam's 0.999, the objective moves with t


def red_diff_grad(problem, prior, mu, sigma, eps, weight):
    """(grad_mu of L(mu) + weight <sg(eps_hat - eps), mu>, D(x_t, sigma)) at x_t = mu + sigma eps."""
    x_t = mu + sigma * eps
    denoised = prior.denoise(x_t, sigma)
    eps_hat = (x_t - denoised) / sigma
    return nll_grad(problem, mu) + weight * (eps_hat - eps), denoised


@torch.no_grad()  # the denoiser is only evaluated (stop-gradient); Adam is handed the gradient
def red_diff(prior, mu, sigmas, rng, problem, lam, weighting="linear", lr=0.1, progress=True, callback=None):
    """Run the optimisation from mu down the ladder ``sigmas``; returns mu. ``callback`` sees each
    iteration's mu, eps, the gradient Adam is given and the denoiser's estimate (``denoised``)."""
    mu = mu.detach().clone().requires_grad_(True)
    # fused: the step count stays a tensor; the plain loop reads it on the host at every step
    adam = torch.optim.Adam([mu], lr=lr, betas=BETAS, fused=True)
    shape = mu.shape[1:]
    for i, sigma in enumerate(steps([float(s) for s in sigmas], "red_diff", progress)):
        eps = rng.randn(*shape, dtype=mu.dtype)
        grad, denoised = red_diff_grad(problem, prior, mu.detach(), sigma, eps, lam * WEIGHTINGS[weighting](sigma))
        if callback is not None:
            callback(dict(i=i, sigma=sigma, mu=mu.detach().clone(), eps=eps, grad=grad, denoised=denoised))
        mu.grad = grad
        adam.step()
    return mu.detach()


@settings("method", (descending_ladder,), lam=number(0), weighting=choice(*WEIGHTINGS), lr=number(0, lo_open=True),
          init=choice(*INITS), pixel_rms=number(0, lo_open=True), progress=boolean(), **LADDER)
class RedDiff(Method):
    """num_levels: iterations (= NFE), down the ladder (geometric from sigma_max to sigma_min; null: the
    prior's); lam: the regulariser's weight lambda; weighting: w(sigma_t); lr: Adam's step;
    init: mu's start, the back-projection scaled to pixel_rms (as OneShot's) or zeros."""

    def __init__(self, name="red_diff", num_levels=200, lam=3.0, weighting="const", lr=0.02, init="back_projection",
                 pixel_rms=0.31, sigma_max=5.0, sigma_min=None, progress=True):
        self.name, self.lam, self.weighting, self.lr = name, float(lam), weighting, float(lr)
        self.init, self.pixel_rms = init, float(pixel_rms)
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.progress = progress

    def start(self, problem):
        """mu's first value: the paper starts from the pseudo-inverse A^+ y, which quantized data do not
        have; the scaled back-projection c A^T y ~ x + noise (``matched_back_projection``) serves every channel."""
        y = problem.channel.dequantize(problem.measurement)
        if self.init == "zeros":
            return torch.zeros(problem.batch_size, *problem.shape, dtype=y.dtype, device=y.device)
        return matched_back_projection(problem, y, self.pixel_rms)[0]

    def _recover(self, problem, prior, rng):
        if problem.channel.curvature_bound() == float("inf"):
            raise ConfigError("method=red_diff is not allowed for a noiseless channel (its likelihood is a step "
                              "function or a point mass, with no gradient to follow): set noise_std > 0.")
        mu = red_diff(prior, self.start(problem), self.ladder.sigmas(prior), rng, problem, self.lam, self.weighting,
                      self.lr, self.progress)
        return Recovery(mu.clamp(0, 1), prior.nfe)
