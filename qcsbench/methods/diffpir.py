"""DiffPIR (Zhu et al., CVPRW 2023; docs/math.md §6) as a baseline for quantized data: the
same half-quadratic splitting as Diff-OneBit, with the Gaussian data term on the dequantized
measurements (the bin levels; +-1 for 1 bit), solved exactly at every level."""
from __future__ import annotations

from qcsbench.errors import ConfigError
from qcsbench.samplers.hqs import gaussian_prox, hqs_diffusion
from qcsbench.methods.base import Ladder, Method
from qcsbench.problem import Recovery
from qcsbench.settings import LADDER, boolean, descending_ladder, number, settings


def data_term_width(noise_std, channel_noise_std) -> float:
    """s of the Gaussian data term: the method's noise_std, or the channel's, which must then be > 0."""
    s = channel_noise_std if noise_std is None else noise_std
    if not s > 0:
        raise ConfigError("method.noise_std=null is not allowed for a noiseless channel: set method.noise_std > 0.")
    return s


@settings("method", (descending_ladder,), lam=number(0, lo_open=True), zeta=number(0, 1),
          noise_std=number(0, lo_open=True, null=True), progress=boolean(), **LADDER)
class DiffPIR(Method):
    """num_levels (= NFE), lam (rho_t = lam / sigma_t^2 on ||y - Ax||^2 / (2 s^2)), zeta, the ladder.
    noise_std: s of the Gaussian data term (null: the channel's noise_std)."""

    def __init__(self, name="diffpir", num_levels=100, lam=30.0, zeta=1.0, noise_std=None, sigma_max=None,
                 sigma_min=None, progress=True):
        self.name = name
        self.lam, self.zeta, self.noise_std = float(lam), float(zeta), noise_std
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.progress = progress

    @staticmethod
    def check_config(config: dict) -> None:
        """Before anything is built: the data term needs a width, its own or the channel's."""
        data_term_width(config["method"].get("noise_std"), config.get("quantizer", {}).get("noise_std", 1.0))

    def _recover(self, problem, prior, rng):
        sigmas = self.ladder.sigmas(prior)
        s = data_term_width(self.noise_std, problem.channel.noise_std)
        prox = gaussian_prox(problem.operator, problem.channel.dequantize(problem.measurement), float(s))
        x = float(sigmas[0]) * rng.randn(*problem.shape)
        x = hqs_diffusion(prior, x, sigmas, rng, prox, self.lam, self.zeta, progress=self.progress)
        return Recovery(x.clamp(0, 1), prior.nfe)
