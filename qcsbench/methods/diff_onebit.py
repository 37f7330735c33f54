"""Diff-OneBit (Chen & Liu, AAAI 2026; docs/math.md §6): DiffPIR's half-quadratic splitting
with the channel's own likelihood as the data term (probit for quantized data, logistic for the
logistic channel), minimised by a few gradient steps at each diffusion level."""
from __future__ import annotations

from qcsbench.likelihood.data_term import surrogate_var
from qcsbench.samplers.hqs import gradient_prox, hqs_diffusion, stable_step
from qcsbench.methods.base import Ladder, Method
from qcsbench.problem import Recovery
from qcsbench.settings import LADDER, boolean, descending_ladder, integer, number, settings


@settings("method", (descending_ladder,), inner_steps=integer(0), step_ratio=number(0, 1, lo_open=True),
          lam=number(0, lo_open=True), zeta=number(0, 1), surrogate_std=number(0, lo_open=True, null=True),
          progress=boolean(), **LADDER)
class DiffOneBit(Method):
    """num_levels: diffusion steps (= NFE); inner_steps: the gradient steps of the data step, each
    step_ratio times the largest stable one (``stable_step``: 2 s^2 / lambda_max(A A^T) for a
    likelihood of width s), so no problem makes them diverge; lam: rho_t = lam / sigma_t^2;
    zeta: fresh noise when re-noising (1 = DDPM-like, 0 = deterministic). The ladder is geometric
    from sigma_max to sigma_min (null: the prior's)."""

    def __init__(self, name="diff_onebit", num_levels=116, inner_steps=20, step_ratio=1.0, lam=0.1, zeta=1.0,
                 surrogate_std=0.25, sigma_max=None, sigma_min=None, progress=True):
        self.name = name
        self.inner_steps, self.step_ratio, self.lam, self.zeta = int(inner_steps), float(step_ratio), float(lam), float(zeta)
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.surrogate_std = surrogate_std
        self.progress = progress

    def extra_var(self, channel):
        """The surrogate's width as extra variance over the channel's noise. A surrogate only
        widens the likelihood: where the channel's noise is already wider (sigma = 0.5 in the
        FFHQ table) its own likelihood is used, as with surrogate_std = null."""
        return surrogate_var(self.surrogate_std, channel)

    def _recover(self, problem, prior, rng):
        sigmas = self.ladder.sigmas(prior)
        extra_var = self.extra_var(problem.channel)
        eta = self.step_ratio * stable_step(problem, extra_var)
        prox = gradient_prox(problem, self.inner_steps, eta, extra_var)
        x = float(sigmas[0]) * rng.randn(*problem.shape)
        first = {}  # the prior's first estimate, kept for the report
        x = hqs_diffusion(prior, x, sigmas, rng, prox, self.lam, self.zeta, progress=self.progress,
                          callback=lambda seen: first.setdefault("estimate", seen["denoised"]))
        return Recovery(x.clamp(0, 1), prior.nfe, dict(first_estimate=first["estimate"].clamp(0, 1), step_size=eta))
