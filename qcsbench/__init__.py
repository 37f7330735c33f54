"""qcsbench: quantized compressed sensing with diffusion / score-based priors."""

import os

from omegaconf import OmegaConf

# ${div:a,b}: integer division in configs, e.g. m = bit budget / bits in the fixed-budget presets.
OmegaConf.register_new_resolver("div", lambda a, b: int(a) // int(b), replace=True)


def channel_label(target: str, bits) -> str:
    """A run folder's word for its channel: 1bit, 3bit, linear (quantizer=none) or logistic."""
    kind = str(target).rsplit(".", 1)[-1]
    return {"GaussianNoise": "linear", "LogisticChannel": "logistic"}.get(kind, f"{bits}bit")


OmegaConf.register_new_resolver("channel_label", channel_label, replace=True)
# ${pid:}: the process id, so that runs started in the same microsecond still get their own folders.
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
