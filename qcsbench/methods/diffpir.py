"""DiffPIR (Zhu et al., CVPRW 2023; docs/math.md §6) as a baseline for quantized data: the
same half-quadratic splitting as Diff-OneBit, with the Gaussian data term on the dequantized
measurements (the bin levels; +-1 for 1 bit), solved exactly at every level."""
from __future__ import annotations

from qcsbench.errors import ConfigError
from qcsbench.samplers.hqs import gaussian_prox, hqs_diffusion
from qcsbench.methods.base import Ladder, Method
from qcsbench.problem import Recovery


class DiffPIR(Method):
    """num_levels (= NFE), lam (rho_t = lam / sigma_t^2 on ||y - Ax||^2 / (2 s^2)), zeta, the ladder.
    noise_std: s of the Gaussian data term (null: the channel's noise_std)."""

    def __init__(self, name="diffpir", num_levels=100, lam=30.0, zeta=1.0, noise_std=None, sigma_max=None,
                 sigma_min=None, progress=True):
        if not lam > 0 or not 0 <= zeta <= 1 or (noise_std is not None and not noise_std > 0):
            raise ConfigError(f"method.lam={lam}, zeta={zeta}, noise_std={noise_std} are not allowed: "
                              "use lam > 0, 0 <= zeta <= 1 and noise_std > 0 or null.")
        self.name = name
        self.lam, self.zeta, self.noise_std = float(lam), float(zeta), noise_std
        self.ladder = Ladder(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)
        self.progress = progress

    def _recover(self, problem, prior, rng):
        sigmas = self.ladder.sigmas(prior)
        s = problem.channel.noise_std if self.noise_std is None else self.noise_std
        if not s > 0:  # needs the problem's channel, so it cannot run at construction
            raise ConfigError("method.noise_std=null is not allowed for a noiseless channel: set method.noise_std > 0.")
        prox = gaussian_prox(problem.operator, problem.channel.dequantize(problem.measurement), float(s))
        x = float(sigmas[0]) * rng.randn(*problem.shape)
        x = hqs_diffusion(prior, x, sigmas, rng, prox, self.lam, self.zeta, progress=self.progress)
        return Recovery(x.clamp(0, 1), prior.nfe)
