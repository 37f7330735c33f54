"""What every neural-network prior shares: device moves, the prior contract, speed knobs.

A family adapter subclasses NetworkPrior and writes ``_score(x, sigma)`` on [0, 1] data
in the VE convention (docs/math.md §2), with x in the network's dtype and sigma a float64
tensor of shape (B,), one level per image. This base turns a float sigma into that tensor,
casts x to the network's dtype and the score back to x's, and adds the optional bf16/fp16
autocast and torch.compile (off by default, on in configs/hardware/gpu.yaml). It never
switches autograd off: DPS differentiates through the network, and the samplers that need
no gradient run under no_grad themselves.
"""
from __future__ import annotations

import contextlib
import copy

import torch

from qcsbench.priors.base import Prior, per_image_sigma
from qcsbench.settings import LADDER, boolean, choice, descending_ladder

AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# What every network prior's factory declares besides its own settings: the ladder it offers
# (its own unless set) and the speed knobs.
NETWORK = dict(LADDER, autocast=choice(*AUTOCAST), compile=boolean())
NETWORK_CHECKS = (descending_ladder,)


def nearest_level(log_sigmas: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per image, the index of the ladder level closest to ``sigma`` (shape (B,)) in log space
    (for networks indexed by level); ``log_sigmas`` is the ladder's log, on sigma's device."""
    distance = log_sigmas[None, :] - sigma.log()[:, None]
    return distance.abs().argmin(dim=1)


def compiled(net):
    """torch.compile(net) with the batch dimension of every tensor argument marked dynamic from the
    first call: a run's last, smaller batch then reuses the compiled graph instead of compiling the
    network again (a batch of one is still compiled on its own: compilers specialise sizes 0 and 1)."""
    module = torch.compile(net)

    def batch_is_dynamic(_, args, kwargs):
        for arg in (*args, *kwargs.values()):
            if torch.is_tensor(arg) and arg.dim() > 0:
                torch._dynamo.maybe_mark_dynamic(arg, 0)

    module.register_forward_pre_hook(batch_is_dynamic, with_kwargs=True)
    return module


class NetworkPrior(Prior):
    net: torch.nn.Module

    def __init__(self, net, shape, sigmas, autocast="none", compile=False):
        self.net = net.eval().requires_grad_(False)
        self.shape = tuple(shape)
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        self._keep_ladder_on(self.sigmas.device)
        self.autocast = str(autocast)
        self.compile = compile
        self._compiled = self.net

    def to(self, device=None, dtype=None):
        out = copy.copy(self)
        current = next(self.net.parameters()).dtype
        # cast only when needed: diffusers warns on every dtype cast, even a no-op one
        out.net = self.net.to(device=device, dtype=dtype if dtype not in (None, current) else None)
        # compile after the move: a compiled module is tied to the parameters it saw
        out._compiled = compiled(out.net) if self.compile else out.net
        out._keep_ladder_on(next(out.net.parameters()).device)
        return out

    def _keep_ladder_on(self, device):
        """The ladder (and its log) on the network's device, made once here rather than copied
        there on every call: a copy to a GPU inside a sampler step makes the host wait for it."""
        self.device_sigmas = self.sigmas.to(device)
        self.log_sigmas = self.device_sigmas.log()

    def _autocast(self, x):
        dtype = AUTOCAST[self.autocast]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=dtype)

    @property
    def _forward(self):
        """The network to call: the compiled one where no gradient is taken, the eager module where
        autograd may differentiate through it (DPS). Inductor's backward of avg_pool2d with
        ceil_mode=True (the ScoreUNet's 7 x 7 level) is silently wrong (pytorch/pytorch#198119;
        85 % relative error in the input gradient of a small ScoreUNet, torch 2.13 on CPU, while the
        forward matched), so the compile knob speeds up the gradient-free samplers only."""
        return self._compiled if not torch.is_grad_enabled() else self.net

    @property
    def dtype(self):
        return next(self.net.parameters()).dtype

    def score(self, x, sigma):
        sigma = per_image_sigma(sigma, x)
        with self._autocast(x):
            out = self._score(x.to(self.dtype), sigma)
        return out.to(x.dtype)

    def _score(self, x, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
