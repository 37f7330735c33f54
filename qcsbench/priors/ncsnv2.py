"""The NCSNv2 prior: an official NCSNv2 checkpoint (the network: qcsbench/networks/ncsnv2.py)
behind the VE interface."""
from __future__ import annotations

import torch

from qcsbench.errors import ConfigError
from qcsbench.networks.ncsnv2 import NCSNv2
from qcsbench.priors.base import broadcast_sigma, geometric_sigmas
from qcsbench.formats.checkpoints import checkpoint_file, load_file, load_state
from qcsbench.priors.network import NETWORK, NETWORK_CHECKS, NetworkPrior, nearest_level
from qcsbench.settings import boolean, integer, settings


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    """DataParallel's ``module.`` prefix off every key (the official files keep it)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


class NCSNv2Prior(NetworkPrior):
    name = "ncsnv2"

    def _score(self, x, sigma):
        level = nearest_level(self.log_sigmas, sigma)
        out = self._forward(x, level)
        # the network divides by its own level's sigma; off the ladder, rescale to the asked one
        trained = self.device_sigmas[level]
        return out * broadcast_sigma(trained / sigma, out)


@settings("prior", NETWORK_CHECKS, checkpoint=checkpoint_file(), channels=integer(1), image_size=integer(1),
          ngf=integer(1), deepest=boolean(), use_ema=boolean(), **NETWORK)
def ncsnv2_prior(checkpoint=None, channels=3, image_size=32, ngf=128, deepest=False, sigma_max=50.0,
                 sigma_min=0.01, num_levels=232, use_ema=True, autocast="none", compile=False,
                 name="ncsnv2") -> NCSNv2Prior:
    """Load an official NCSNv2 checkpoint: a list [state_dict (``module.`` keys), optimizer,
    epoch, step, ema_shadow] (a bare state dict also works). ``use_ema`` takes the EMA
    weights, as the official sampling code does."""
    key = "prior.checkpoint"
    states = load_file(checkpoint, key)
    sigmas = geometric_sigmas(sigma_max, sigma_min, num_levels)
    net = NCSNv2(sigmas, channels, ngf, image_size, deepest)
    what = f"{'NCSNv2Deepest' if deepest else 'NCSNv2'} (prior={name}, ngf={ngf}, {channels} channels, {num_levels} levels)"
    if isinstance(states, (list, tuple)):
        if not states or not isinstance(states[0], dict):
            raise ConfigError(f"{key}={checkpoint} is a list without a state dict first: it is not an NCSNv2 checkpoint.")
        weights, shadow = states[0], (states[-1] if len(states) >= 5 and isinstance(states[-1], dict) else None)
    elif isinstance(states, dict):
        weights, shadow = states, None
    else:
        raise ConfigError(f"{key}={checkpoint} holds a {type(states).__name__}, not an NCSNv2 checkpoint "
                          f"(a list [state_dict, optimizer, epoch, step, ema_shadow]).")
    load_state(net, strip_prefix(weights), f"{key}={checkpoint}", what)
    if use_ema and shadow is not None:
        # EMAHelper keeps parameters only (no sigmas buffer), keyed without the prefix
        params = dict(net.named_parameters())
        shadow = strip_prefix(shadow)
        missing = sorted(set(params) - set(shadow))
        if missing:
            raise ConfigError(f"{key}={checkpoint}: its EMA shadow lacks {len(missing)} parameters (first "
                              f"{missing[0]}); use prior.use_ema=false to take the raw weights.")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(shadow[k])
    stored = net.sigmas.double()
    if not torch.allclose(stored, sigmas, rtol=1e-4):
        raise ConfigError(f"{key}={checkpoint} was trained on the ladder {float(stored[0]):g} -> {float(stored[-1]):g} "
                          f"in {len(stored)} levels, not prior.sigma_max={sigma_max}, prior.sigma_min={sigma_min}, "
                          f"prior.num_levels={num_levels}: pick the prior= option of its dataset.")
    prior = NCSNv2Prior(net, (channels, image_size, image_size), sigmas, autocast, compile)
    prior.name = name
    return prior
