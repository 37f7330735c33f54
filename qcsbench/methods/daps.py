"""DAPS, decoupled annealing posterior sampling (Zhang et al., CVPR 2025; docs/math.md §6) with the
channel's likelihood; the loop is qcsbench.samplers.daps."""
from __future__ import annotations

from qcsbench.likelihood.data_term import surrogate_var
from qcsbench.methods.base import Ladder, Method
from qcsbench.problem import Recovery
from qcsbench.samplers.daps import daps, edm_sigmas
from qcsbench.settings import LADDER, SIGMA, boolean, descending_ladder, integer, number, settings


@settings("method", (descending_ladder,), ode_steps=integer(1), ode_sigma_min=SIGMA, langevin_steps=integer(0),
          step_ratio=number(0, 1, lo_open=True), surrogate_std=number(0, lo_open=True, null=True), progress=boolean(),
          **LADDER)
class DAPS(Method):
    """num_levels: annealing levels, on the EDM (rho = 7) ladder between sigma_max and sigma_min
    (null: the prior's ends); ode_steps: Euler steps of the x0 estimate per level (NFE =
    num_levels x ode_steps), its grid ending at ode_sigma_min (null: the prior's smallest level)
    and then 0; langevin_steps: Langevin steps on x0 per level, each step_ratio times the largest
    stable step; surrogate_std: the likelihood widened to this noise level (null: the channel's
    own, the posterior DAPS aims at)."""

    def __init__(self, name="daps", num_levels=200, ode_steps=5, ode_sigma_min=None, langevin_steps=100,
                 step_ratio=0.5, surrogate_std=None, sigma_max=None, sigma_min=None, progress=True):
        self.name = name
        self.ode_steps, self.ode_sigma_min = int(ode_steps), ode_sigma_min
        self.langevin_steps, self.step_ratio, self.surrogate_std = int(langevin_steps), float(step_ratio), surrogate_std
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.progress = progress

    def _recover(self, problem, prior, rng):
        ends = self.ladder.sigmas(prior)
        sigmas = edm_sigmas(float(ends[0]), float(ends[-1]), len(ends))
        ode_min = float(prior.sigmas[-1]) if self.ode_sigma_min is None else self.ode_sigma_min
        x = sigmas[0] * rng.randn(*problem.shape)
        x = daps(prior, x, sigmas, rng, problem, self.ode_steps, ode_min, self.langevin_steps, self.step_ratio,
                 surrogate_var(problem.channel, self.surrogate_std), self.progress)
        return Recovery(x.clamp(0, 1), prior.nfe)
