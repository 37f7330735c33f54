"""The file scripts/train_prior.py writes and ``prior=trained`` / ``prior=ncsn_mnist`` read.

A dict: format (FORMAT), config (the ScoreUNet's keyword arguments), shape (C, H, W), ema
(the EMA weights, what we sample with), the trained ladder (sigma_max, sigma_min,
num_levels), step, loss and train_config; the resumable checkpoint.pt also holds model
and optimizer (the raw weights and Adam's state).
"""
from __future__ import annotations

import math

from qcsbench.errors import ConfigError
from qcsbench.files import save_tensors
from qcsbench.formats.checkpoints import load_file

FORMAT = "qcsbench-score-unet-v1"
UNET_KEYS = ("in_channels", "channels", "emb_dim", "sigma_data")  # ScoreUNet's keyword arguments


def write(path, *, config: dict, shape, ema: dict, sigma_max: float, sigma_min: float, num_levels: int, step: int,
          loss, train_config: dict, model: dict | None = None, optimizer: dict | None = None):
    """Write a trained prior (with model and optimizer: a checkpoint training can resume from)."""
    out = dict(format=FORMAT, config=config, shape=list(shape), ema=ema, sigma_max=float(sigma_max),
               sigma_min=float(sigma_min), num_levels=int(num_levels), step=step, loss=loss,
               train_config=train_config)
    if model is not None:
        out.update(model=model, optimizer=optimizer)
    return save_tensors(path, out)


def _int(v, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def problem(state: dict, checkpoint: bool) -> str | None:
    """What is wrong with a trained-prior dict (its first field that cannot work), or None."""
    config = state.get("config")
    fields = {
        "config": isinstance(config, dict),
        "config.in_channels": not isinstance(config, dict) or _int(config.get("in_channels", 1), 1),
        "config.channels": not isinstance(config, dict) or (
            isinstance(config.get("channels", [1]), (list, tuple)) and len(config.get("channels", [1])) > 0
            and all(_int(c, 1) for c in config.get("channels", [1]))),
        "config.emb_dim": not isinstance(config, dict) or (_int(config.get("emb_dim", 2), 2)
                                                          and config.get("emb_dim", 2) % 2 == 0),
        "config.sigma_data": not isinstance(config, dict) or _positive(config.get("sigma_data", 0.5)),
        "shape": isinstance(state.get("shape"), (list, tuple)) and len(state["shape"]) == 3
        and all(_int(v, 1) for v in state["shape"]),
        "ema": isinstance(state.get("ema"), dict),
        "sigma_max": _positive(state.get("sigma_max")), "sigma_min": _positive(state.get("sigma_min")),
        "num_levels": _int(state.get("num_levels"), 1), "step": _int(state.get("step"), 0),
    }
    if checkpoint:
        fields.update(model=isinstance(state.get("model"), dict), optimizer=isinstance(state.get("optimizer"), dict))
    for name, ok in fields.items():
        if not ok:
            head, _, sub = name.partition(".")
            value = state.get(head) if not sub else state[head].get(sub)
            shown = repr(value) if len(repr(value)) <= 60 and "\n" not in repr(value) else f"a {type(value).__name__}"
            return f"{name} is missing" if value is None else f"{name} is {shown}, which cannot work"
    unknown = sorted(set(config) - set(UNET_KEYS))
    if unknown:
        return f"config holds {', '.join(map(str, unknown))}, which the score UNet does not take"
    if not state["sigma_max"] > state["sigma_min"]:
        return f"sigma_max {state['sigma_max']} is not above sigma_min {state['sigma_min']}"
    return None


def read(path, key: str = "prior.checkpoint", checkpoint: bool = False) -> dict:
    """The dict a trained-prior file holds; a ConfigError naming ``key`` and the file when it is
    not one or a field cannot work. ``checkpoint``: also the raw weights and Adam's state
    (what scripts/train_prior.py resumes from)."""
    state = load_file(path, key)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{key}={path} is not a checkpoint written by scripts/train_prior.py "
                          f"(no format {FORMAT!r}): use the prior= option of its family (ncsnv2_*, ddpm, ncsnpp, adm_*).")
    wrong = problem(state, checkpoint)
    if wrong:
        raise ConfigError(f"{key}={path} is a damaged trained-prior file ({wrong}): "
                          "write it again with scripts/train_prior.py.")
    return state
