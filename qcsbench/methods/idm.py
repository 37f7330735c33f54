"""IDM-style few-step learned recovery for quantized CS (docs/math.md §10): the method that
recovers with a network trained by ``scripts/train.py learner=idm``. The unrolled network, its
steps and its loss are qcsbench/networks/idm.py.
"""
from __future__ import annotations

import torch

from qcsbench.methods.base import LearnedMethod
from qcsbench.networks.idm import CONSISTENCY, IDMNet
from qcsbench.priors.trained import score_unet_of
from qcsbench.problem import Recovery
from qcsbench.settings import boolean, choice, integer, number, settings


@settings("learner", steps=integer(1), sigma_start=number(0, lo_open=True), sigma_end=number(0, lo_open=True),
          consistency=choice(*CONSISTENCY), inject=boolean(), train_unet=boolean(), checkpointing=boolean(),
          pixel_rms=number(0, lo_open=True))
def learner(prior, name: str = "idm", steps: int = 3, sigma_start: float = 1.0, sigma_end: float = 0.05,
            consistency: str = "quantized", inject: bool = True, train_unet: bool = True, checkpointing: bool = True,
            pixel_rms: float = 0.31) -> IDMNet:
    """The untrained network on the prior's UNet: what ``scripts/train.py learner=idm`` fine-tunes."""
    return IDMNet(score_unet_of(prior), steps, sigma_start, sigma_end, consistency, inject, train_unet,
                  checkpointing, pixel_rms)


class IDM(LearnedMethod):
    """Recovery with a network trained by ``scripts/train.py learner=idm``; ``checkpoint`` null
    takes the shipped model for the default experiment (qcsbench/learned/weights/). Deterministic:
    NFE = the network's number of steps."""

    learner = "idm"
    point_estimate = True

    def __init__(self, name="idm", checkpoint=None, shipped="idm_mnist_1bit_m200", allow_mismatch=False,
                 progress=True):
        super().__init__(name, checkpoint, shipped, allow_mismatch, progress)
        self.steps = self._net.settings["steps"]

    @torch.no_grad()
    def _recover(self, problem, prior, rng):
        net = self.network(problem)
        x_hat = net(problem, progress=self.progress)
        return Recovery(x_hat.clamp(0, 1), self.steps, dict(sigmas=net.sigmas().tolist()))
