"""PnP-DM (Wu et al., NeurIPS 2024; docs/math.md §6): split Gibbs sampling between the channel's
likelihood and the diffusion prior, with an annealed coupling rho_k; the loop is
qcsbench.samplers.split_gibbs. PnP-OneBit (Ma, Wu & Liu) is this method with its own schedule
(configs/method/pnp_onebit.yaml): its probit likelihood is the 1-bit channel's own."""
from __future__ import annotations

from qcsbench.errors import ConfigError
from qcsbench.likelihood.data_term import surrogate_var
from qcsbench.methods.base import Ladder, Method
from qcsbench.problem import Recovery
from qcsbench.samplers.split_gibbs import coupling_schedule, split_gibbs
from qcsbench.settings import LADDER, boolean, descending_ladder, integer, number, settings


def descending_coupling(group: str, values: dict) -> None:
    """rho_max at or above rho_min where both are given."""
    hi, lo = values.get("rho_max"), values.get("rho_min")
    if hi is not None and lo is not None and not hi >= lo:
        raise ConfigError(f"{group}.rho_max={hi} is not allowed with {group}.rho_min={lo}: "
                          "use rho_max >= rho_min (the coupling anneals down to rho_min).")


@settings("method", (descending_ladder, descending_coupling), iterations=integer(1), rho_max=number(0, lo_open=True),
          rho_decay=number(0, 1, lo_open=True), rho_min=number(0, lo_open=True), langevin_steps=integer(0),
          step_ratio=number(0, 1, lo_open=True, hi_open=True), eta=number(0, 1),
          surrogate_std=number(0, lo_open=True, null=True), progress=boolean(), **LADDER)
class PnPDM(Method):
    """iterations (K): Gibbs sweeps, rho_k = max(rho_max rho_decay^k, rho_min); langevin_steps (J):
    Langevin steps of the likelihood step, each step_ratio times its stable step
    2 / (Lip(grad L) + 1 / rho_k^2); eta: DDIM's eta in the prior step (1: DDPM's ancestral
    sampler, 0: deterministic), which runs from rho_k down the levels of the ladder below rho_k
    (the prior's ladder unless sigma_max / sigma_min / num_levels are set; NFE per sweep = 1 + the
    number of levels below rho_k); surrogate_std: widen the likelihood to this width where the
    channel's noise is narrower (null: the channel's own, the exact posterior)."""

    def __init__(self, name="pnp_dm", iterations=25, rho_max=1.0, rho_decay=0.8, rho_min=0.02, langevin_steps=20,
                 step_ratio=0.5, eta=1.0, surrogate_std=None, sigma_max=None, sigma_min=None, num_levels=50,
                 progress=True):
        self.name, self.iterations = name, int(iterations)
        self.rho_max, self.rho_decay, self.rho_min = float(rho_max), float(rho_decay), float(rho_min)
        self.langevin_steps, self.step_ratio, self.eta = int(langevin_steps), float(step_ratio), float(eta)
        self.surrogate_std = surrogate_std
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.progress = progress

    def _recover(self, problem, prior, rng):
        ladder = [float(s) for s in self.ladder.sigmas(prior)]
        rhos = coupling_schedule(self.rho_max, self.rho_decay, self.rho_min, self.iterations)
        # x^(0) ~ N(0, I) on the [-1, 1] scale the papers' images live on
        x = 0.5 + 0.5 * rng.randn(*problem.shape)
        x = split_gibbs(prior, x, rhos, rng, problem, ladder, self.langevin_steps, self.step_ratio, self.eta,
                        surrogate_var(problem.channel, self.surrogate_std), self.progress)
        return Recovery(x.clamp(0, 1), prior.nfe)
