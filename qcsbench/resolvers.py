"""The OmegaConf resolvers the configs use, registered by ``register()`` wherever configs are
composed (the command line, the scripts, the tests); importing ``qcsbench`` registers nothing."""
from __future__ import annotations

import os

from hydra.utils import get_object
from omegaconf import OmegaConf


def div(a, b) -> int:
    """${div:a,b}: integer division, e.g. m = bit budget / bits in the fixed-budget presets."""
    return int(a) // int(b)


def named_class(target: str):
    """The class or function a config's ``_target_`` names, imported, never called; None where it
    cannot be (instantiate then names the target that cannot be imported in its own sentence)."""
    try:
        return get_object(str(target)) if target else None
    except Exception:  # a missing module, a typo, or a user module that fails to import
        return None


def channel_label(target: str, bits) -> str:
    """A run folder's word for its channel, as the channel's class gives it (``run_label``): 1bit, 3bit,
    linear (quantizer=none) or logistic. A target that names no channel (a typo the config check then
    reports in a sentence) gives the bits' word."""
    channel = named_class(target)
    return channel.run_label(bits) if hasattr(channel, "run_label") else f"{bits}bit"


def register() -> None:
    """Make ${div:}, ${channel_label:} and ${pid:} known to OmegaConf (safe to call again).
    ${pid:} is the process id, so that runs started in the same microsecond get their own folders."""
    OmegaConf.register_new_resolver("div", div, replace=True)
    OmegaConf.register_new_resolver("channel_label", channel_label, replace=True)
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
