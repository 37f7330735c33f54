"""qcsbench: quantized compressed sensing with diffusion / score-based priors."""

from omegaconf import OmegaConf

# ${div:a,b}: integer division in configs, e.g. m = bit budget / bits in the fixed-budget presets.
OmegaConf.register_new_resolver("div", lambda a, b: int(a) // int(b), replace=True)
