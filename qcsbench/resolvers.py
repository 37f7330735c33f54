"""The OmegaConf resolvers the configs use, registered by ``register()`` wherever configs are
composed (the command line, the scripts, the tests); importing ``qcsbench`` registers nothing."""
from __future__ import annotations

import os

from omegaconf import OmegaConf


def div(a, b) -> int:
    """${div:a,b}: integer division, e.g. m = bit budget / bits in the fixed-budget presets."""
    return int(a) // int(b)


def channel_label(target: str, bits) -> str:
    """A run folder's word for its channel: 1bit, 3bit, linear (quantizer=none) or logistic."""
    kind = str(target).rsplit(".", 1)[-1]
    return {"GaussianNoise": "linear", "LogisticChannel": "logistic"}.get(kind, f"{bits}bit")


def register() -> None:
    """Make ${div:}, ${channel_label:} and ${pid:} known to OmegaConf (safe to call again).
    ${pid:} is the process id, so that runs started in the same microsecond get their own folders."""
    OmegaConf.register_new_resolver("div", div, replace=True)
    OmegaConf.register_new_resolver("channel_label", channel_label, replace=True)
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
