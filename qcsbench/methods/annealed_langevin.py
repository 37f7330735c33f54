"""Annealed Langevin dynamics with a likelihood score chosen in the method config: QCS-SGM
(Meng & Kabashima, ICLR 2023; ``likelihood: diagonal``), QCS-SGM+ (arXiv 2302.00919;
``likelihood: ep``) and ALD for linear CS (Jalal et al., NeurIPS 2021; ``likelihood: linear``,
which ignores quantization) are this one method with three configs."""
from __future__ import annotations

import inspect

import torch

from qcsbench import likelihood as likelihoods
from qcsbench.errors import ConfigError
from qcsbench.methods.base import Ladder, Method
from qcsbench.problem import Recovery
from qcsbench.samplers.langevin import WEIGHTINGS, annealed_langevin
from qcsbench.settings import (LADDER, Settings, boolean, choice, constructor_keys, descending_ladder, integer, number,
                               settings, text)


@settings("method", (descending_ladder,), likelihood=text(), step_lr=number(0, lo_open=True), steps_per_level=integer(1),
          gamma=number(0), weighting=choice(*WEIGHTINGS), max_step_ratio=number(0, 2, lo_open=True, hi_open=True, null=True),
          report_previous=boolean(), final_denoise=boolean(), progress=boolean(), **LADDER)
class AnnealedLangevin(Method):
    """step_lr (eps), steps_per_level (K), gamma and the ladder (the prior's unless
    sigma_max / sigma_min / num_levels are set) follow docs/math.md §3.
    likelihood: a module of qcsbench.likelihood (diagonal, ep, linear); its own settings
    (e.g. ep_damping, noise_std) come as further keywords, declared by the module's ``knobs``.
    report_previous: return the state before the last update (reference code behaviour).
    max_step_ratio: cap the step at this fraction of 1 / curvature (prior 1/beta^2 plus the
    likelihood's bound) where eps alone would be unstable, e.g. the diagonal score of an
    ill-conditioned A; null keeps the reference's step everywhere.
    final_denoise: finish with one Tweedie step x + beta_L^2 s(x, beta_L) (one more NFE)."""

    def __init__(self, name="annealed_langevin", likelihood="diagonal", step_lr=5e-5, steps_per_level=5, gamma=1.0,
                 weighting="plain", sigma_max=None, sigma_min=None, num_levels=None, report_previous=False,
                 final_denoise=False, progress=True, max_step_ratio=1.9, **likelihood_knobs):
        self.name, self.likelihood = name, likelihood
        self._likelihood = likelihoods.load(likelihood)
        unknown = set(likelihood_knobs) - self.likelihood_keys(likelihood)
        if unknown:
            raise ConfigError(f"method.{sorted(unknown)[0]} is not a setting of likelihood={likelihood}: remove it.")
        self.likelihood_knobs = self._likelihood.knobs(**likelihood_knobs)
        self.step_lr, self.steps_per_level, self.gamma = float(step_lr), int(steps_per_level), float(gamma)
        self.weighting = weighting
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.report_previous, self.final_denoise, self.progress = report_previous, final_denoise, progress
        self.max_step_ratio = max_step_ratio

    @staticmethod
    def likelihood_keys(likelihood: str) -> set[str]:
        """The settings the likelihood module ``likelihood`` reads from the method config."""
        return set(inspect.signature(likelihoods.load(likelihood).knobs).parameters)

    @classmethod
    def settings_for(cls, config: dict) -> Settings:
        """This class's settings and those of the likelihood a method config names."""
        knobs = likelihoods.load(config.get("likelihood", "diagonal")).knobs
        named = set(inspect.signature(cls.__init__).parameters) - {"self", "likelihood_knobs"}
        return Settings("method", {**cls.settings.rules, **knobs.settings.rules}, cls.settings.checks,
                        named | constructor_keys(knobs))

    @classmethod
    def couples_batch(cls, settings: dict) -> bool:
        return settings.get("weighting") == "norm_ratio_batch"  # QCS-SGM+'s step weight, a ratio over the batch

    def likelihood_score(self, problem):
        return self._likelihood.build(problem, **self.likelihood_knobs)

    @torch.no_grad()
    def _recover(self, problem, prior, rng):
        sigmas = self.ladder.sigmas(prior)
        x = rng.rand(*problem.shape).to(problem.measurement.y.device)
        score = self.likelihood_score(problem)
        seen = {}  # the state before the last update, which the reference code reports
        x = annealed_langevin(prior, x, sigmas, rng, score, step_lr=self.step_lr, steps_per_level=self.steps_per_level,
                              gamma=self.gamma, weighting=self.weighting, progress=self.progress,
                              max_step_ratio=self.max_step_ratio, callback=seen.update)
        if self.report_previous:
            x = seen["x"]
        if self.final_denoise:
            x = prior.denoise(x, float(sigmas[-1]))
        stats = score.stats() if hasattr(score, "stats") else {}  # e.g. EP's sweeps per image
        return Recovery(x.clamp(0, 1), prior.nfe, stats=stats)
