"""diffusers ``UNet2DModel`` folders (``save_pretrained`` layout), loaded offline.

prior.path is a folder or a Hugging Face model id (google/ddpm-cifar10-32) already in the
local cache (HF_HUB_CACHE, or HF_HOME/hub); nothing is ever downloaded.

prior=ddpm: an epsilon (or sample / v) DDPM, abar from the folder's scheduler config,
converted to the VE score on [0, 1] data by qcsbench.priors.vp. prior=ncsnpp: a VE score
model (Fourier time embedding; the UNet itself divides by sigma) on [0, 1] data, as the
score_sde VE checkpoints (google/ncsnpp-*) were trained; its ladder comes from the
ScoreSdeVeScheduler config.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from qcsbench.errors import ConfigError
from qcsbench.priors.base import geometric_sigmas, overridden_ladder
from qcsbench.priors.checkpoints import existing_dir, first_line
from qcsbench.priors.network import NetworkPrior
from qcsbench.priors.vp import VPEpsilonPrior, ladder_for, vp_sigmas


MODEL_ID = re.compile(r"[\w.-]+/[\w.-]+")


def cached_model(model_id: str, key="prior.path") -> Path:
    """The snapshot folder of a model id in the local Hugging Face cache (offline: never downloads)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise ConfigError(f"{key}={model_id} is neither a folder nor a model in the local Hugging Face cache "
                          f"({constants.HF_HUB_CACHE}): fetch it once with `hf download {model_id}` where there "
                          f"is a network, or give the folder that holds it.") from None


def model_folder(path, key="prior.path") -> Path:
    """A folder as given, or the cached snapshot of a model id (ORG/NAME) that is not a folder here."""
    given = str(path) if path is not None else ""
    if MODEL_ID.fullmatch(given) and not Path(given).expanduser().exists():
        return cached_model(given, key)
    return existing_dir(path, key)


def _folders(path, key="prior.path"):
    """(unet folder, scheduler config file or None): a bare model folder or a pipeline folder."""
    root = model_folder(path, key)
    unet = root / "unet" if (root / "unet" / "config.json").is_file() else root
    if not (unet / "config.json").is_file():
        raise ConfigError(f"{key}={path} holds no config.json (nor unet/config.json): give a folder written by "
                          f"UNet2DModel.save_pretrained or a diffusers pipeline.")
    for candidate in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json",
                      unet / "scheduler_config.json"):
        if candidate.is_file():
            return unet, candidate
    return unet, None


def load_unet(folder: Path, key="prior.path"):
    from diffusers import UNet2DModel

    try:
        return UNet2DModel.from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False)
    except Exception as err:  # diffusers raises several types for unreadable / foreign folders
        raise ConfigError(f"{key}={folder} could not be loaded as a diffusers UNet2DModel ({first_line(err)}).") from None


def _shape(unet):
    size = unet.config.sample_size
    size = size if isinstance(size, int) else int(size[0])
    return (unet.config.in_channels, size, size)


class DiffusersDDPMPrior(VPEpsilonPrior):
    name = "ddpm"

    def _model_output(self, x_vp, t):
        out = self._forward(x_vp, t).sample
        return out[:, : x_vp.shape[1]]  # learned-variance models return [eps, v]


def ddpm_prior(path=None, sigma_max=None, sigma_min=None, num_levels=None, autocast="none", compile=False,
               name="ddpm") -> DiffusersDDPMPrior:
    unet_dir, sched_file = _folders(path)
    if sched_file is None:
        raise ConfigError(f"prior.path={path} holds no scheduler_config.json (nor scheduler/scheduler_config.json): "
                          f"the DDPM noise schedule is needed to convert the model.")
    from diffusers import DDPMScheduler

    config = json.loads(sched_file.read_text())
    scheduler = DDPMScheduler.from_config(config)
    unet = load_unet(unet_dir)
    abar = scheduler.alphas_cumprod.double()
    sigmas = ladder_for(vp_sigmas(abar) / 2, sigma_max, sigma_min, num_levels)
    prior = DiffusersDDPMPrior(unet, _shape(unet), abar, sigmas, config.get("prediction_type", "epsilon"),
                               autocast, compile)
    prior.name = name
    return prior


class DiffusersVEPrior(NetworkPrior):
    name = "ncsnpp"

    def _score(self, x, sigma):
        return self._forward(x, sigma.to(x.dtype)).sample


def ncsnpp_prior(path=None, sigma_max=None, sigma_min=None, num_levels=None, autocast="none", compile=False,
                 name="ncsnpp") -> DiffusersVEPrior:
    unet_dir, sched_file = _folders(path)
    config = json.loads(sched_file.read_text()) if sched_file else {}
    unet = load_unet(unet_dir)
    if unet.config.time_embedding_type != "fourier":
        raise ConfigError(f"prior.path={path} holds a UNet with {unet.config.time_embedding_type} time embedding, "
                          f"not a VE score model (fourier): use prior=ddpm for DDPM models.")
    own = geometric_sigmas(config.get("sigma_max", 348.0), config.get("sigma_min", 0.01),
                           config.get("num_train_timesteps", 2000))
    sigmas = overridden_ladder(own, sigma_max, sigma_min, num_levels)
    prior = DiffusersVEPrior(unet, _shape(unet), sigmas, autocast, compile)
    prior.name = name
    return prior
