"""Priors trained by scripts/train_prior.py, including the shipped ``prior=ncsn_mnist``
(their file: qcsbench/formats/trained_file.py)."""
from __future__ import annotations

import copy
from pathlib import Path

from qcsbench.errors import ConfigError
from qcsbench.formats import trained_file
from qcsbench.formats.checkpoints import checkpoint_file, existing_file, first_line, load_state
from qcsbench.networks.score_unet import ScoreUNet, denoise_centered
from qcsbench.priors.base import broadcast_sigma, geometric_sigmas, overridden_ladder
from qcsbench.priors.network import NETWORK, NETWORK_CHECKS, NetworkPrior
from qcsbench.settings import boolean, choice, settings

WEIGHTS = Path(__file__).resolve().parent / "weights"


class TrainedPrior(NetworkPrior):
    """D on [0,1] from the EDM-preconditioned UNet on [-1,1]: D01 = (D(2x-1, 2s) + 1)/2."""

    name = "trained"

    def _score(self, x, sigma):
        d = (denoise_centered(self._forward, 2 * x - 1, 2 * sigma) + 1) / 2
        return (d - x) / broadcast_sigma(sigma, x) ** 2


def file_or_shipped(group: str, values: dict) -> None:
    """A trained prior reads its checkpoint, or the shipped file named by ``shipped``."""
    if values.get("checkpoint") is None and not values.get("shipped"):
        existing_file(None, f"{group}.checkpoint")  # says it is not set


@settings("prior", (*NETWORK_CHECKS, file_or_shipped), checkpoint=checkpoint_file(null=True),
          shipped=choice("ncsn_mnist", null=True), use_ema=boolean(), **NETWORK)
def trained_prior(checkpoint=None, shipped: str | None = None, use_ema: bool = True, sigma_max=None,
                  sigma_min=None, num_levels=None, autocast="none", compile=False, name="trained") -> TrainedPrior:
    """Load a prior written by scripts/train_prior.py; ``shipped=ncsn_mnist`` picks the file in
    qcsbench/priors/weights/ when ``checkpoint`` is null. The ladder defaults to the trained one."""
    key = "prior.checkpoint"
    if checkpoint is None and shipped is not None:
        checkpoint = WEIGHTS / f"{shipped}.pt"
    state = trained_file.read(checkpoint, key)
    try:
        net = ScoreUNet(**state["config"])
    except (TypeError, ValueError, RuntimeError) as err:  # e.g. channels GroupNorm cannot split
        raise ConfigError(f"{key}={checkpoint} holds a score UNet config that cannot be built ({first_line(err)}): "
                          "write it again with scripts/train_prior.py.") from None
    weights = state["ema"] if use_ema or "model" not in state else state["model"]
    load_state(net, weights, f"{key}={checkpoint}", "score UNet")
    own = geometric_sigmas(state["sigma_max"], state["sigma_min"], state["num_levels"])
    sigmas = overridden_ladder(own, sigma_max, sigma_min, num_levels)
    prior = TrainedPrior(net, state["shape"], sigmas, autocast, compile)
    prior.name = name
    return prior


def score_unet_of(prior) -> ScoreUNet:
    """A trainable copy of the ScoreUNet behind a trained prior (prior=ncsn_mnist or prior=trained):
    where learned methods (scripts/train.py) start from."""
    net = getattr(prior, "net", None)
    if not isinstance(net, ScoreUNet):
        raise ConfigError(f"a learned method starts from a score UNet trained by scripts/train_prior.py, and "
                          f"prior={getattr(prior, 'name', type(prior).__name__)} is not one: use prior=ncsn_mnist "
                          "or prior=trained prior.checkpoint=...")
    return copy.deepcopy(net).requires_grad_(True)
