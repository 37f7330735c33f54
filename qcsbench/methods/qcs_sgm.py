"""QCS-SGM (Meng & Kabashima, ICLR 2023): annealed Langevin with the diagonal pseudo-likelihood score."""
from __future__ import annotations

import torch

from qcsbench.errors import ConfigError
from qcsbench.langevin import WEIGHTINGS, annealed_langevin
from qcsbench.likelihood_scores import DiagonalLikelihoodScore
from qcsbench.methods.base import Method, noise_ladder
from qcsbench.problem import Recovery


class QCSSGM(Method):
    """step_lr (eps), steps_per_level (K), gamma and the ladder (the prior's unless
    sigma_max / sigma_min / num_levels are set) follow docs/math.md §3.
    report_previous: return the state before the last update (reference code behaviour).
    max_step_ratio: cap the step at this fraction of 1 / curvature (prior 1/beta^2 plus the
    likelihood's bound) where eps alone would be unstable, e.g. the diagonal score of an
    ill-conditioned A; null keeps the reference's step everywhere.
    final_denoise: finish with one Tweedie step x + beta_L^2 s(x, beta_L) (one more NFE)."""

    name = "qcs_sgm"

    def __init__(self, name="qcs_sgm", step_lr=5e-5, steps_per_level=5, gamma=1.0, weighting="plain", sigma_max=None,
                 sigma_min=None, num_levels=None, report_previous=False, final_denoise=False, progress=True,
                 max_step_ratio=1.9):
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"method.weighting={weighting!r} is not allowed: use one of {', '.join(WEIGHTINGS)}.")
        if not step_lr > 0 or int(steps_per_level) < 1:
            raise ConfigError(f"method.step_lr={step_lr}, method.steps_per_level={steps_per_level} are not allowed: "
                              "use step_lr > 0 and steps_per_level >= 1.")
        self.name = name
        self.step_lr, self.steps_per_level, self.gamma = float(step_lr), int(steps_per_level), float(gamma)
        self.weighting = weighting
        self.ladder = dict(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.report_previous, self.final_denoise, self.progress = report_previous, final_denoise, progress
        if max_step_ratio is not None and not 0 < max_step_ratio < 2:
            raise ConfigError(f"method.max_step_ratio={max_step_ratio} is not allowed: use a value in (0, 2) or null.")
        self.max_step_ratio = max_step_ratio

    def likelihood_score(self, problem):
        return DiagonalLikelihoodScore(problem)

    @torch.no_grad()
    def _recover(self, problem, prior, rng):
        sigmas = noise_ladder(prior, **self.ladder)
        x = rng.rand(*problem.shape).to(problem.measurement.y.device)
        score = self.likelihood_score(problem)
        x, nfe = annealed_langevin(x, prior, score, sigmas, rng, step_lr=self.step_lr,
                                   steps_per_level=self.steps_per_level, gamma=self.gamma, weighting=self.weighting,
                                   report_previous=self.report_previous, progress=self.progress,
                                   max_step_ratio=self.max_step_ratio)
        if self.final_denoise:
            x = prior.denoise(x, float(sigmas[-1]))
            nfe += 1
        return Recovery(x.clamp(0, 1), nfe, stats=self.stats(score))

    def stats(self, likelihood_score) -> dict:
        """Per-image numbers about how the likelihood score worked (Recovery.stats); none here."""
        return {}
