"""What every neural-network prior shares: device moves, no-grad evaluation, speed knobs.

A family adapter subclasses NetworkPrior and writes ``_score(x, sigma)`` on [0, 1] data
in the VE convention (MATH.md section 2); this base adds the optional bf16/fp16 autocast
and torch.compile (off by default, on in configs/experiment/gpu.yaml).
"""
from __future__ import annotations

import contextlib
import copy

import torch

from qcsbench.errors import ConfigError
from qcsbench.priors.base import Prior

AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_speed_knobs(autocast, compile) -> None:
    if str(autocast) not in AUTOCAST:
        raise ConfigError(f"prior.autocast={autocast} is not allowed: use one of {', '.join(AUTOCAST)}.")
    if not isinstance(compile, bool):
        raise ConfigError(f"prior.compile={compile} is not allowed: use true or false.")


def nearest_level(sigmas: torch.Tensor, sigma: float) -> int:
    """Index of the ladder level closest to ``sigma`` in log space (networks indexed by level)."""
    return int(torch.argmin((sigmas.log() - torch.log(torch.tensor(float(sigma), dtype=sigmas.dtype))).abs()))


class NetworkPrior(Prior):
    net: torch.nn.Module

    def __init__(self, net, shape, sigmas, autocast="none", compile=False):
        check_speed_knobs(autocast, compile)
        self.net = net.eval().requires_grad_(False)
        self.shape = tuple(shape)
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        self.autocast = str(autocast)
        self.compile = compile
        self._forward = self.net

    def to(self, device=None, dtype=None):
        out = copy.copy(self)
        current = next(self.net.parameters()).dtype
        # cast only when needed: diffusers warns on every dtype cast, even a no-op one
        out.net = self.net.to(device=device, dtype=dtype if dtype not in (None, current) else None)
        # compile after the move: a compiled module is tied to the parameters it saw
        out._forward = torch.compile(out.net) if self.compile else out.net
        return out

    @property
    def device(self):
        return next(self.net.parameters()).device

    def _autocast(self, x):
        dtype = AUTOCAST[self.autocast]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=dtype)

    def score(self, x, sigma):
        with torch.no_grad(), self._autocast(x):
            out = self._score(x, float(sigma))
        return out.to(x.dtype)

    def _score(self, x, sigma: float) -> torch.Tensor:
        raise NotImplementedError
