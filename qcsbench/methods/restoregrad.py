"""RestoreGrad-style conditional diffusion with a jointly learned prior (docs/math.md §11): the
method that samples a model trained by ``scripts/train.py learner=restoregrad``. The conditional
denoiser, its Prior and Posterior Nets, its objective and its sampler are qcsbench/networks/restoregrad.py.
"""
from __future__ import annotations

import torch

from qcsbench.methods.base import LearnedMethod
from qcsbench.networks.restoregrad import PRIOR_KINDS, RestoreGradNet
from qcsbench.priors.trained import score_unet_of
from qcsbench.problem import Recovery
from qcsbench.settings import choice, integer, number, settings


@settings("learner", prior_kind=choice(*PRIOR_KINDS), sigma_max=number(0, lo_open=True), sigma_min=number(0, lo_open=True),
          spread_min=number(0, 1, lo_open=True, hi_open=True), spread_max=number(1, lo_open=True), eta=number(0),
          lam=number(0), sampling_steps=integer(1), pixel_rms=number(0, lo_open=True))
def learner(prior, name: str = "restoregrad", prior_kind: str = "learned", sigma_max: float = 50.0,
            sigma_min: float = 0.01, spread_min: float = 0.1, spread_max: float = 2.0, eta: float = 10.0,
            lam: float = 0.01, sampling_steps: int = 20, pixel_rms: float = 0.31) -> RestoreGradNet:
    """The untrained model on the prior's UNet: what ``scripts/train.py learner=restoregrad`` trains."""
    return RestoreGradNet(score_unet_of(prior), prior_kind, sigma_max, sigma_min, spread_min, spread_max, eta, lam,
                          sampling_steps, pixel_rms)


@settings("method", steps=integer(1, null=True))
class RestoreGrad(LearnedMethod):
    """Recovery by sampling a model trained with ``scripts/train.py learner=restoregrad``; ``steps``
    null samples with the number it was trained to use. NFE = steps."""

    learner = "restoregrad"

    def __init__(self, name="restoregrad", checkpoint=None, shipped="restoregrad_mnist_1bit_m200", steps=None,
                 allow_mismatch=False, progress=True):
        super().__init__(name, checkpoint, shipped, allow_mismatch, progress)
        self.steps = int(steps if steps is not None else self._net.settings["sampling_steps"])
        self.prior_kind = self._net.settings["prior_kind"]

    @torch.no_grad()
    def _recover(self, problem, prior, rng):
        x_hat = self.network(problem)(problem, self.steps, rng, self.progress)
        return Recovery(x_hat.clamp(0, 1), self.steps)
