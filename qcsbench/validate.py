"""Every knob of every config group, checked in one pass before anything is loaded, fitted or drawn.

Each group has a small table: config key -> what it may hold. ``check_config`` walks the
composed config once and stops at the first value that cannot work, with one sentence
naming the full key and the values allowed (a ConfigError). Only cheap things are looked
at: types and ranges, whether folders exist or can be created, whether a file is there and
starts like the format it should be. Checks that need the data (num_images against the
test split, m against the number of pixels) stay with the components that know it, which
are still built before the prior.
"""
from __future__ import annotations

import inspect
import math
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from qcsbench.errors import ConfigError


class Rule:
    """What one knob may hold: ``test(value) -> bool`` and the words for the allowed values."""

    def __init__(self, test, allowed: str, null: bool = False):
        self.test, self.null = test, null
        self.allowed = allowed + (" or null" if null else "")

    def ok(self, value) -> bool:
        return (self.null and value is None) or (value is not None and self.test(value))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(lo=None, hi=None, null=False) -> Rule:
    if hi is not None:
        words = f"an integer from {lo} to {hi}"
    elif lo == 0:
        words = "a non-negative integer"
    elif lo == 1:
        words = "a positive integer"
    else:
        words = f"an integer >= {lo}"
    return Rule(lambda v: _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi), words, null)


def number(lo=None, hi=None, lo_open=False, hi_open=False, null=False) -> Rule:
    """A finite number in a range (open or closed at each end)."""
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    words = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def test(v):
        if not _is_number(v):
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return hi is None or (v < hi if hi_open else v <= hi)
    return Rule(test, words, null)


def boolean(null=False) -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false", null)


def choice(*options, null=False) -> Rule:
    return Rule(lambda v: not isinstance(v, bool) and v in options,
                "one of " + ", ".join(str(o) for o in options), null)


def text(null=False) -> Rule:
    return Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string", null)


def text_list() -> Rule:
    return Rule(lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "a list of strings, e.g. [a,b]")


SEED32, SEED64 = 2**32 - 1, 2**64 - 1  # what scikit-learn's random_state and torch.manual_seed take
AUTOCAST = choice("none", "bf16", "fp16")
SIGMA = number(0, lo_open=True, null=True)

TOP = {
    # m is checked by the operator, which knows the number of pixels (still before the prior)
    "bits": integer(1, 16), "noise_std": number(0), "seed": integer(0),
    "num_images": integer(1), "batch_size": integer(1), "resume": boolean(),
    "n_over_m": integer(1), "bit_budget": integer(1), "prior_autocast": AUTOCAST, "prior_compile": boolean(),
}
DATASET = {"image_size": integer(1), "center_crop": integer(1, null=True), "channels": choice(1, 3)}
PRIOR = {
    "name": text(), "n_components": integer(1), "reg_covar": number(0, lo_open=True), "max_train": integer(2, null=True),
    "seed": integer(0, SEED32), "max_iter": integer(1), "sigma_max": SIGMA, "sigma_min": SIGMA,
    "num_levels": integer(1, null=True), "use_ema": boolean(), "autocast": AUTOCAST, "compile": boolean(),
    "channels": integer(1), "image_size": integer(1), "ngf": integer(1), "deepest": boolean(),
    "in_channels": integer(1), "num_channels": integer(1), "num_res_blocks": integer(1),
    "channel_mult": Rule(lambda v: isinstance(v, str), "a string such as \"1,1,2,2,4,4\" or \"\""),
    "attention_resolutions": Rule(lambda v: isinstance(v, str) and all(p.strip().isdigit() for p in v.split(",")),
                                  "comma-separated resolutions such as \"32,16,8\""),
    "num_heads": integer(1), "num_head_channels": integer(-1), "learn_sigma": boolean(),
    "use_scale_shift_norm": boolean(), "resblock_updown": boolean(), "diffusion_steps": integer(1),
    "noise_schedule": choice("linear"), "shipped": choice("ncsn_mnist", null=True),
}
OPERATOR = {"seed": integer(0, SEED64), "kappa": number(1), "rho": number(0, 1, hi_open=True), "max_oversampling": integer(1),
            "block": integer(1)}
QUANTIZER = {
    "bits": integer(1, 16), "noise_std": number(0), "range": choice("image", "batch"), "dither": boolean(),
    "reference_clamps": boolean(), "temperature": number(0, lo_open=True),
}
METHOD = {
    "name": text(), "likelihood": text(),
    "step_lr": number(0, lo_open=True), "steps_per_level": integer(1), "gamma": number(0),
    "weighting": choice("plain", "norm_ratio", "norm_ratio_batch"), "sigma_max": SIGMA, "sigma_min": SIGMA,
    "num_levels": integer(1, null=True), "max_step_ratio": number(0, 2, lo_open=True, hi_open=True, null=True),
    "report_previous": boolean(), "final_denoise": boolean(), "progress": boolean(),
    "ep_max_iter": integer(1, null=True), "ep_damping": number(0, 1, hi_open=True), "ep_tolerance": number(0, null=True),
    "noise_std": number(0, null=True), "sparsity": integer(1), "iterations": integer(1),
    "step": number(0, lo_open=True, null=True), "pixel_rms": number(0, lo_open=True), "inner_steps": integer(0),
    "step_ratio": number(0, 1, lo_open=True), "lam": number(0, lo_open=True), "zeta": number(0, 1),
    "surrogate_std": number(0, lo_open=True, null=True), "guidance": choice("nll", "sqrt_nll"),
    "checkpoint": text(null=True), "allow_mismatch": boolean(), "shipped": text(), "steps": integer(1, null=True),
}
# scripts/train.py: the training knobs and the learner group (configs/train.yaml, configs/learner/).
TRAIN = {
    "seed": integer(0, SEED64), "batch_size": integer(1), "lr": number(0, lo_open=True), "warmup_steps": integer(0),
    "grad_clip": number(0, lo_open=True, null=True), "ema_decay": number(0, 1, hi_open=True), "max_steps": integer(0),
    "max_minutes": number(0, lo_open=True, null=True), "eval_every": integer(1), "eval_images": integer(1),
    "log_every": integer(1), "save_every": integer(1), "threads": integer(1, null=True),
}
LEARNER = {
    "name": text(), "steps": integer(1), "sigma_start": number(0, lo_open=True), "sigma_end": number(0, lo_open=True),
    "consistency": choice("quantized", "linear"), "inject": boolean(), "train_unet": boolean(),
    "checkpointing": boolean(), "pixel_rms": number(0, lo_open=True),
    "prior_kind": choice("learned", "identity", "handmade"), "sigma_max": number(0, lo_open=True),
    "sigma_min": number(0, lo_open=True), "spread_min": number(0, 1, lo_open=True, hi_open=True),
    "spread_max": number(1, lo_open=True), "eta": number(0), "lam": number(0), "sampling_steps": integer(1),
}
# Where one method reads a knob differently from the rest (by the class its _target_ names).
BY_TARGET = {"DPS": {"zeta": number(0)}, "DiffPIR": {"noise_std": number(0, lo_open=True, null=True)}}
LOGGER = {"project": text(), "entity": text(null=True), "mode": choice("online", "offline", "disabled"),
          "group": text(null=True), "tags": text_list(), "name": text(null=True)}
GROUPS = {"dataset": DATASET, "prior": PRIOR, "operator": OPERATOR, "quantizer": QUANTIZER, "method": METHOD,
          "logger": LOGGER}
# Top-level keys besides TOP and GROUPS: anything else (+debug=tiny with no debug group) is a typo.
OTHER_TOP = ("m", "device", "cache_dir", "results_dir", "optimized_metric", "run_dir")
TRAIN_TOP = ("learner", "out_dir")
# Priors that read a checkpoint file and those that read a model folder.
CHECKPOINT_PRIORS = ("ncsnv2_prior", "adm_prior", "trained_prior")
FOLDER_PRIORS = ("ddpm_prior", "ncsnpp_prior")
# Channels that do not quantize to `bits` levels: a bits other than 1 would be silently ignored.
BITLESS_CHANNELS = {"GaussianNoise": "none", "LogisticChannel": "logistic"}


def shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def check_value(key: str, value, rule: Rule) -> None:
    if not rule.ok(value):
        raise ConfigError(f"{key}={shown(value)} is not allowed: use {rule.allowed}.")


def resolve_device(name) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; anything else must name a usable device."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={name} is not a device: use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={name} is not supported: use auto, cpu, cuda, cuda:N or mps.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} is not available on this machine (no CUDA): use device=auto or device=cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name} does not exist: this machine has {torch.cuda.device_count()} CUDA devices.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name} is not available on this machine (no Apple GPU): use device=auto or device=cpu.")
    return device


def writable_folder(key: str, value) -> None:
    """A folder that exists and is writable, or can be created: its nearest existing ancestor
    must be a writable folder. Writing is tried (a nameless temporary file), not inferred from
    permission bits, which say nothing to root nor of a read-only or full file system."""
    if value is None or not str(value).strip():
        raise ConfigError(f"{key}= is empty: give a folder path (it is created if missing).")
    path = Path(str(value)).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={value} is not a folder: use a folder path (it is created if missing).")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={value} cannot be created ({probe} is not a folder): use a folder path.")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise ConfigError(f"{key}={value} is not writable (no file can be created in {probe}: {err.strerror}): "
                          "use a folder you can write to.") from None


def existing_folder(key: str, value, hint: str) -> Path:
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{key}={value} is not an existing folder: {hint}")
    return path


def readable_checkpoint(key: str, value) -> None:
    """An existing, readable file that starts like a torch.save file (zip) or a pickle."""
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={value} is not an existing file: give the path of the checkpoint file.")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise ConfigError(f"{key}={value} cannot be read ({err.strerror}): check its permissions.") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise ConfigError(f"{key}={value} is not a PyTorch checkpoint (neither a torch.save zip nor a pickle): "
                          "give the checkpoint file itself.")


def accepted_keys(target: str, node: dict) -> set[str] | None:
    """The keyword arguments a component's constructor takes (None: cannot tell); a class whose
    keys depend on its config (a method with a pluggable likelihood) says so by ``config_keys``."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception:
        return None
    if hasattr(obj, "config_keys"):
        return obj.config_keys(node)
    found = set()
    for fn in ([c.__init__ for c in obj.__mro__] if inspect.isclass(obj) else [obj]):
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            continue
        found |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return found
    return None


def option_name(group: str, node: dict) -> str:
    return str(node.get("name") or str(node.get("_target_", group)).rsplit(".", 1)[-1])


def check_group(group: str, node, table: dict) -> None:
    if not isinstance(node, dict):
        raise ConfigError(f"{group}={shown(node)} is not a config group option: pick one with {group}=NAME.")
    target = node.get("_target_")
    keys = accepted_keys(target, node) if target else None
    table = dict(table, **BY_TARGET.get(str(target).rsplit(".", 1)[-1], {}))
    for key, value in node.items():
        full = f"{group}.{key}"
        if key.startswith("_") or (group == "prior" and key in ("train", "cache_dir")):
            continue
        if keys is not None and key not in keys:
            settable = sorted(k for k in keys if k not in ("self", "shape", "m", "split", "train", "prior"))
            allowed = f"use one of {', '.join(settable)}" if settable else "it takes no settings"
            raise ConfigError(f"{full} is not a setting of {group}={option_name(group, node)}: {allowed}.")
        if key in table:
            check_value(full, value, table[key])


def check_ladder(group: str, node: dict) -> None:
    hi, lo = node.get("sigma_max"), node.get("sigma_min")
    if hi is not None and lo is not None and not hi > lo:
        raise ConfigError(f"{group}.sigma_max={hi} is not allowed with {group}.sigma_min={lo}: "
                          "use sigma_max > sigma_min (the ladder descends).")


def check_prior_files(node: dict) -> None:
    kind = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    if kind in CHECKPOINT_PRIORS:
        checkpoint = node.get("checkpoint")
        if checkpoint is None and not node.get("shipped"):
            raise ConfigError("prior.checkpoint is not set: give the path of the checkpoint file, "
                              "e.g. prior.checkpoint=/path/to/checkpoint.pth.")
        if checkpoint is not None:
            readable_checkpoint("prior.checkpoint", checkpoint)
    if kind in FOLDER_PRIORS:
        path = node.get("path")
        if path is None:
            raise ConfigError("prior.path is not set: give the folder of the model (the one holding config.json).")
        from qcsbench.priors.diffusers_models import model_folder

        folder = model_folder(path)  # a model id (ORG/NAME) is looked up in the local Hugging Face cache
        if not ((folder / "config.json").is_file() or (folder / "unet" / "config.json").is_file()):
            raise ConfigError(f"prior.path={path} holds no config.json (nor unet/config.json): "
                              "give a folder written by diffusers' save_pretrained.")


def check_gmm_has_train_split(dataset: dict, prior: dict) -> None:
    """A fitted prior needs train images that are not the test images."""
    from qcsbench.data.image_folder import has_splits

    if (str(dataset.get("_target_", "")).endswith("ImageFolder") and str(prior.get("_target_", "")).endswith("fitted_gmm")
            and not has_splits(Path(str(dataset["root"])).expanduser())):
        raise ConfigError(f"dataset.root={dataset['root']} is a flat folder (no train/ and test/ subfolders), so "
                          "prior=gmm would be fitted on the test images: put training images in root/train and "
                          "test images in root/test, or use a network prior.")


def check_gmm_sizes(prior: dict) -> None:
    """A mixture needs at least as many training images as components (scikit-learn's rule);
    with max_train set that is known now, otherwise fitted_gmm checks it against the data."""
    if str(prior.get("_target_", "")).endswith("fitted_gmm"):
        count, components = prior.get("max_train"), prior.get("n_components")
        if count is not None and components is not None and components > count:
            raise ConfigError(f"prior.n_components={components} is not allowed with prior.max_train={count}: "
                              "a mixture needs at least as many training images as components.")


def check_noiseless_diffpir(config: dict) -> None:
    """DiffPIR's Gaussian data term needs a width: its own noise_std, or the channel's."""
    method, channel = config.get("method", {}), config.get("quantizer", {})
    if (str(method.get("_target_", "")).endswith("DiffPIR") and method.get("noise_std") is None
            and channel.get("noise_std") == 0):
        raise ConfigError("method.noise_std=null is not allowed for a noiseless channel: set method.noise_std > 0.")


def first_missing(cfg) -> str | None:
    """The first mandatory value (???) left unset, as its full key."""
    missing = OmegaConf.missing_keys(cfg)
    order = ["dataset.root", *sorted(missing)]
    return next((k for k in order if k in missing), None)


def check_top_keys(cfg, extra=()) -> None:
    """Every top-level key is one we read: a key added with + that nothing reads is refused,
    not silently ignored (``+debug=tiny`` where no debug group exists runs the default otherwise)."""
    known = {*TOP, *GROUPS, *OTHER_TOP, *extra}
    for key in cfg:
        if key not in known and key != "hydra":
            raise ConfigError(f"{key} is not a setting (no config group or top-level key has that name): "
                              f"use one of {', '.join(sorted(known))}.")


def check_config(cfg, extra_keys=()) -> dict:
    """Check the composed config; return it resolved as a plain dict (for the result key and
    the logger). Raises ConfigError with one sentence at the first bad value. ``extra_keys``:
    the top-level keys a script reads besides run.py's."""
    check_top_keys(cfg, extra_keys)
    for key, rule in TOP.items():  # first, as other values are computed from them (m = bit_budget / bits)
        if key in cfg and not OmegaConf.is_missing(cfg, key) and not OmegaConf.is_interpolation(cfg, key):
            check_value(key, cfg[key], rule)
    try:
        missing = first_missing(cfg)
    except Exception:  # an interpolation that cannot be evaluated: named below
        missing = None
    if missing:
        raise ConfigError(f"{missing} is not set: give it on the command line, e.g. {missing}=/path/to/data.")
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # a resolver or interpolation that cannot be evaluated
        key = getattr(err, "full_key", "") or "the config"
        raise ConfigError(f"{key} cannot be resolved ({str(err).splitlines()[0]}): fix that value.") from None
    config.pop("hydra", None)
    for key, rule in TOP.items():
        if key in config:
            check_value(key, config[key], rule)
    resolve_device(config.get("device", "auto"))
    for key in ("results_dir", "cache_dir", "run_dir"):
        if config.get(key) is not None:
            writable_folder(key, config[key])
    for group, table in GROUPS.items():
        if group in config:
            check_group(group, config[group], table)
    dataset = config.get("dataset", {})
    if "root" in dataset:
        existing_folder("dataset.root", dataset["root"], "point it at the folder that holds the data.")
    check_gmm_has_train_split(dataset, config.get("prior", {}))
    for group in ("prior", "method"):
        check_ladder(group, config.get(group, {}))
    check_prior_files(config.get("prior", {}))
    check_gmm_sizes(config.get("prior", {}))
    check_noiseless_diffpir(config)
    if config.get("method", {}).get("checkpoint") is not None:
        readable_checkpoint("method.checkpoint", config["method"]["checkpoint"])
    quantizer = str(config.get("quantizer", {}).get("_target_", "")).rsplit(".", 1)[-1]
    if quantizer in BITLESS_CHANNELS and config.get("bits", 1) != 1:
        raise ConfigError(f"bits={config['bits']} is not used by quantizer={BITLESS_CHANNELS[quantizer]} "
                          "(it does not quantize to bits levels): leave bits at 1, or use quantizer=uniform.")
    return config


def check_train_config(cfg) -> dict:
    """check_config for scripts/train.py: the shared groups as run.py checks them, then the
    training knobs, the learner group and the output folder."""
    for key, rule in TRAIN.items():  # the knobs the command line sets most, first
        if key in cfg and not OmegaConf.is_interpolation(cfg, key):
            check_value(key, cfg[key], rule)
    config = check_config(cfg, (*TRAIN, *TRAIN_TOP))
    check_group("learner", config.get("learner"), LEARNER)
    if str(config["prior"].get("_target_", "")).rsplit(".", 1)[-1] != "trained_prior":
        raise ConfigError(f"prior={option_name('prior', config['prior'])} cannot start a learner, which fine-tunes a "
                          "score UNet trained by scripts/train_prior.py: use prior=ncsn_mnist or prior=trained "
                          "prior.checkpoint=....")
    writable_folder("out_dir", config["out_dir"])
    return config
