"""The file scripts/train_prior.py writes and ``prior=trained`` / ``prior=ncsn_mnist`` read.

A dict: format (FORMAT), config (the ScoreUNet's keyword arguments), shape (C, H, W), ema
(the EMA weights, what we sample with), the trained ladder (sigma_max, sigma_min,
num_levels), step, loss and train_config; the resumable checkpoint.pt also holds model
and optimizer (the raw weights and Adam's state).
"""
from __future__ import annotations

from qcsbench.errors import ConfigError
from qcsbench.files import save_tensors
from qcsbench.priors.checkpoints import load_file

FORMAT = "qcsbench-score-unet-v1"


def write(path, *, config: dict, shape, ema: dict, sigma_max: float, sigma_min: float, num_levels: int, step: int,
          loss, train_config: dict, model: dict | None = None, optimizer: dict | None = None):
    """Write a trained prior (with model and optimizer: a checkpoint training can resume from)."""
    out = dict(format=FORMAT, config=config, shape=list(shape), ema=ema, sigma_max=float(sigma_max),
               sigma_min=float(sigma_min), num_levels=int(num_levels), step=step, loss=loss,
               train_config=train_config)
    if model is not None:
        out.update(model=model, optimizer=optimizer)
    return save_tensors(path, out)


def read(path, key: str = "prior.checkpoint") -> dict:
    """The dict a trained-prior file holds; a ConfigError naming ``key`` when it is not one."""
    state = load_file(path, key)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{key}={path} is not a checkpoint written by scripts/train_prior.py "
                          f"(no format {FORMAT!r}): use the prior= option of its family (ncsnv2_*, ddpm, ncsnpp, adm_*).")
    return state
