"""diffusers ``UNet2DModel`` folders (``save_pretrained`` layout), loaded offline.

prior.path is a folder or a Hugging Face model id (google/ddpm-cifar10-32) already in the
local cache (HF_HUB_CACHE, or HF_HOME/hub); nothing is ever downloaded.

prior=ddpm: an epsilon (or sample / v) DDPM, abar from the folder's scheduler config,
converted to the VE score on [0, 1] data by qcsbench.priors.vp. prior=ncsnpp: a VE score
model (Fourier time embedding; the UNet itself divides by sigma) on [0, 1] data, as the
score_sde VE checkpoints (google/ncsnpp-*) were trained; its ladder comes from the
ScoreSdeVeScheduler config.

The folder's JSON files (config.json, scheduler_config.json, model_index.json) are read here,
checked, and handed to diffusers as dicts, and the weights are read here (safetensors, or a
weights-only torch.load): diffusers is never given a path or a name it could look up on the hub.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from qcsbench.errors import ConfigError
from qcsbench.formats.checkpoints import existing_dir, first_line, load_file, load_state
from qcsbench.priors.base import geometric_sigmas, overridden_ladder
from qcsbench.priors.network import NETWORK, NETWORK_CHECKS, NetworkPrior
from qcsbench.priors.vp import VPEpsilonPrior, ladder_for, vp_sigmas
from qcsbench.settings import Check, settings


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


JSON_TYPES = {str: "a string", list: "an array", int: "a number", float: "a number", bool: "a boolean",
              type(None): "null"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def read_config(file: Path, key="prior.path") -> dict:
    """A diffusers JSON config as a dict; anything else stops with one sentence naming the file."""
    try:
        config = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{key}: {file} is not readable JSON ({first_line(err)}): replace it with the "
                          "model's own file.") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{key}: {file} holds {JSON_TYPES.get(type(config), 'a value')}, not a JSON object of "
                          "settings: replace it with the model's own file.")
    return config


def setting(config: dict, name: str, file: Path, default, integer=False, key="prior.path"):
    """config[name] (``default`` when absent), checked to be a finite number > 0 (an integer >= 1)."""
    value = config.get(name, default)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(value, bool) or not ok or not value > 0:
        wanted = "an integer >= 1" if integer else "a finite number > 0"
        raise ConfigError(f"{key}: {file} sets {name}={json.dumps(value)}, which is not allowed: it must be "
                          f"{wanted}.")
    return value


def _folders(path, key="prior.path"):
    """(unet folder, scheduler config file or None): a bare model folder or a pipeline folder."""
    root = model_folder(path, key)
    if (root / "model_index.json").is_file():
        read_config(root / "model_index.json", key)
    unet = root / "unet" if (root / "unet" / "config.json").is_file() else root
    if not (unet / "config.json").is_file():
        raise ConfigError(f"{key}={path} holds no config.json (nor unet/config.json): give a folder written by "
                          f"UNet2DModel.save_pretrained or a diffusers pipeline.")
    for candidate in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json",
                      unet / "scheduler_config.json"):
        if candidate.is_file():
            return unet, candidate
    return unet, None


def model_files(path, key="prior.path") -> list[Path]:
    """The files a ddpm / ncsnpp prior reads from its folder (the UNet's config and weights, the
    scheduler config): what the result key digests (a pipeline folder's other parts are not read)."""
    unet, sched_file = _folders(path, key)
    weights = [unet / name for name in WEIGHT_FILES if (unet / name).is_file()][:1]
    return [unet / "config.json", *weights, *([sched_file] if sched_file else [])]


def read_weights(folder: Path, key="prior.path") -> dict:
    """The UNet's state dict from its safetensors file (or its .bin, weights only)."""
    for name in WEIGHT_FILES:
        file = folder / name
        if not file.is_file():
            continue
        if name.endswith(".bin"):
            return load_file(file, key)
        from safetensors import SafetensorError
        from safetensors.torch import load_file as load_safetensors

        try:
            return load_safetensors(file)
        except (SafetensorError, OSError) as err:
            raise ConfigError(f"{key}: {file} could not be read as safetensors ({first_line(err)}).") from None
    raise ConfigError(f"{key}: {folder} holds no {' or '.join(WEIGHT_FILES)} (sharded and other formats are not "
                      "read): save the UNet with save_pretrained into one file.")


def load_unet(folder: Path, key="prior.path"):
    """The UNet2DModel of a folder, in eval mode, as UNet2DModel.from_pretrained gives it, built
    from its config.json (read here, a dict) and its weights (read here)."""
    from diffusers import UNet2DModel

    file = folder / "config.json"
    config = read_config(file, key)
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ConfigError(f"{key}: {file} describes a {config['_class_name']}, not a UNet2DModel: give the folder "
                          "of an unconditional diffusers UNet.")
    size = config.get("sample_size", 64)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in
               (size if isinstance(size, list) and size else [size])):
        raise ConfigError(f"{key}: {file} sets sample_size={json.dumps(size)}, which is not allowed: it must be "
                          "a positive integer.")
    setting(config, "in_channels", file, 3, integer=True, key=key)
    try:
        unet = UNet2DModel.from_config(config)
    except Exception as err:  # diffusers raises several types for settings it cannot build
        raise ConfigError(f"{key}: {file} does not describe a UNet2DModel diffusers can build "
                          f"({type(err).__name__}: {first_line(err)}).") from None
    state = read_weights(folder, key)
    unet._fix_state_dict_keys_on_load(state)  # older files' attention names, renamed as from_pretrained does
    load_state(unet, state, f"{key}={folder}", "diffusers UNet2DModel")
    return unet.eval()


def _shape(unet):
    size = unet.config.sample_size
    size = size if isinstance(size, int) else int(size[0])
    return (unet.config.in_channels, size, size)


class DiffusersDDPMPrior(VPEpsilonPrior):
    name = "ddpm"

    def _model_output(self, x_vp, t):
        out = self._forward(x_vp, t).sample
        return out[:, : x_vp.shape[1]]  # learned-variance models return [eps, v]


# prior.path: a folder holding a diffusers model (or the id of one in the local cache), found before it is read
MODEL_FOLDER = Check(lambda key, value: _folders(value, key))


@settings("prior", NETWORK_CHECKS, path=MODEL_FOLDER, **NETWORK)
def ddpm_prior(path=None, sigma_max=None, sigma_min=None, num_levels=None, autocast="none", compile=False,
               name="ddpm") -> DiffusersDDPMPrior:
    unet_dir, sched_file = _folders(path)
    if sched_file is None:
        raise ConfigError(f"prior.path={path} holds no scheduler_config.json (nor scheduler/scheduler_config.json): "
                          f"the DDPM noise schedule is needed to convert the model.")
    from diffusers import DDPMScheduler

    config = read_config(sched_file)
    setting(config, "num_train_timesteps", sched_file, 1000, integer=True)
    try:
        scheduler = DDPMScheduler.from_config(config)
    except Exception as err:  # an unknown beta_schedule, betas of the wrong length, ...
        raise ConfigError(f"prior.path: {sched_file} does not describe a DDPM noise schedule "
                          f"({type(err).__name__}: {first_line(err)}).") from None
    abar = scheduler.alphas_cumprod.double()
    if not (torch.isfinite(abar).all() and (abar > 0).all() and (abar < 1).all() and (abar.diff() < 0).all()):
        raise ConfigError(f"prior.path: {sched_file} gives cumulative alphas that do not decrease within (0, 1): "
                          "check its betas.")
    unet = load_unet(unet_dir)
    sigmas = ladder_for(vp_sigmas(abar) / 2, sigma_max, sigma_min, num_levels)
    prior = DiffusersDDPMPrior(unet, _shape(unet), abar, sigmas, config.get("prediction_type", "epsilon"),
                               autocast, compile)
    prior.name = name
    return prior


class DiffusersVEPrior(NetworkPrior):
    name = "ncsnpp"

    def _score(self, x, sigma):
        return self._forward(x, sigma.to(x.dtype)).sample


@settings("prior", NETWORK_CHECKS, path=MODEL_FOLDER, **NETWORK)
def ncsnpp_prior(path=None, sigma_max=None, sigma_min=None, num_levels=None, autocast="none", compile=False,
                 name="ncsnpp") -> DiffusersVEPrior:
    unet_dir, sched_file = _folders(path)
    config = read_config(sched_file) if sched_file else {}
    own_max = setting(config, "sigma_max", sched_file, 348.0)
    own_min = setting(config, "sigma_min", sched_file, 0.01)
    levels = setting(config, "num_train_timesteps", sched_file, 2000, integer=True)
    if not own_max > own_min:
        raise ConfigError(f"prior.path: {sched_file} sets sigma_max={own_max} and sigma_min={own_min}: a VE "
                          "ladder needs sigma_max > sigma_min.")
    unet = load_unet(unet_dir)
    if unet.config.time_embedding_type != "fourier":
        raise ConfigError(f"prior.path={path} holds a UNet with {unet.config.time_embedding_type} time embedding, "
                          f"not a VE score model (fourier): use prior=ddpm for DDPM models.")
    sigmas = overridden_ladder(geometric_sigmas(own_max, own_min, levels), sigma_max, sigma_min, num_levels)
    prior = DiffusersVEPrior(unet, _shape(unet), sigmas, autocast, compile)
    prior.name = name
    return prior
