"""The ADM prior: a guided-diffusion UNet checkpoint (the network: qcsbench/networks/adm.py)
behind the VE interface."""
from __future__ import annotations

from qcsbench.formats.checkpoints import checkpoint_file, load_file, load_state
from qcsbench.networks.adm import ADMUNet
from qcsbench.priors.network import NETWORK, NETWORK_CHECKS
from qcsbench.priors.vp import VPEpsilonPrior, ladder_for, linear_alphas_cumprod, vp_sigmas
from qcsbench.settings import Rule, boolean, integer, settings


class ADMPrior(VPEpsilonPrior):
    name = "adm"

    def _model_output(self, x_vp, t):
        out = self._forward(x_vp, t)
        return out[:, : x_vp.shape[1]]  # learned variance: the first C channels are epsilon


@settings("prior", NETWORK_CHECKS, checkpoint=checkpoint_file(), image_size=integer(1), in_channels=integer(1),
          num_channels=integer(1), num_res_blocks=integer(1),
          channel_mult=Rule(lambda v: isinstance(v, str), "a string such as \"1,1,2,2,4,4\" or \"\""),
          attention_resolutions=Rule(lambda v: isinstance(v, str) and all(p.strip().isdigit() for p in v.split(",")),
                                     "comma-separated resolutions such as \"32,16,8\""),
          num_heads=integer(1), num_head_channels=integer(-1), learn_sigma=boolean(), use_scale_shift_norm=boolean(),
          resblock_updown=boolean(), diffusion_steps=integer(1),
          noise_schedule=Rule(lambda v: v == "linear", "linear (both public ADM checkpoints)"), **NETWORK)
def adm_prior(checkpoint=None, image_size=256, in_channels=3, num_channels=128, num_res_blocks=1,
              channel_mult="", attention_resolutions="16", num_heads=4, num_head_channels=64, learn_sigma=True,
              use_scale_shift_norm=True, resblock_updown=True, diffusion_steps=1000, noise_schedule="linear",
              sigma_max=None, sigma_min=None, num_levels=None, autocast="none", compile=False, name="adm"):
    """Load a guided-diffusion UNet checkpoint; the hyperparameters are those of its
    ``model_and_diffusion_defaults`` flags (configs/prior/adm_*.yaml hold the two public ones)."""
    state = load_file(checkpoint, "prior.checkpoint")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = ADMUNet(image_size, in_channels, num_channels, num_res_blocks, channel_mult, attention_resolutions,
                  num_heads, num_head_channels, learn_sigma, use_scale_shift_norm, resblock_updown)
    load_state(net, state, f"prior.checkpoint={checkpoint}", f"ADM UNet (prior={name})")
    abar = linear_alphas_cumprod(diffusion_steps)
    sigmas = ladder_for(vp_sigmas(abar) / 2, sigma_max, sigma_min, num_levels)
    prior = ADMPrior(net.float(), (in_channels, image_size, image_size), abar, sigmas, "epsilon", autocast, compile)
    prior.name = name
    return prior
