"""Diffusion posterior sampling (Chung et al., ICLR 2023; docs/math.md §6) with the channel's
likelihood, on the VE ladder; the loop is qcsbench.samplers.dps."""
from __future__ import annotations

from qcsbench.methods.base import Method, Ladder
from qcsbench.problem import Recovery
from qcsbench.samplers.dps import GUIDANCES, dps
from qcsbench.settings import LADDER, boolean, choice, descending_ladder, number, settings


@settings("method", (descending_ladder,), zeta=number(0), guidance=choice(*GUIDANCES), progress=boolean(), **LADDER)
class DPS(Method):
    """num_levels (= NFE, each with one backward pass through the denoiser), zeta, guidance, the ladder."""

    def __init__(self, name="dps", num_levels=200, zeta=0.1, guidance="sqrt_nll", sigma_max=None, sigma_min=None,
                 progress=True):
        self.name, self.zeta, self.guidance = name, float(zeta), guidance
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.progress = progress

    def _recover(self, problem, prior, rng):
        sigmas = self.ladder.sigmas(prior)
        x = float(sigmas[0]) * rng.randn(*problem.shape)
        x = dps(prior, x, sigmas, rng, problem, self.zeta, self.guidance, self.progress)
        return Recovery(x.clamp(0, 1), prior.nfe)
