"""The composed config, checked in one pass before anything is loaded, fitted or drawn.

``check_config`` walks it and stops at the first value that cannot work with one sentence (a
ConfigError): the top-level knobs, each group against the settings its component declares
(qcsbench/settings.py; the class a node's ``_target_`` names is imported, never built), the
folders, and the few rules across groups. Checks that need the data (num_images against the
test split, m against the pixels) run when the set-up builds those parts, still before the prior.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from qcsbench.device import resolve_device
from qcsbench.errors import ConfigError
from qcsbench.files import writable_folder
from qcsbench.resolvers import named_class
from qcsbench.priors.network import AUTOCAST
from qcsbench.settings import SEED64, Settings, boolean, choice, declared, integer, number, shown, text

TOP = {
    # m is checked by the operator, which knows the number of pixels (still before the prior)
    "bits": integer(1, 16), "noise_std": number(0), "seed": integer(0),
    "num_images": integer(1), "num_samples": integer(1), "batch_size": integer(1), "resume": boolean(),
    "n_over_m": integer(1), "bit_budget": integer(1), "prior_autocast": choice(*AUTOCAST), "prior_compile": boolean(),
}
# scripts/train.py's knobs besides the shared groups (configs/train.yaml).
TRAIN = {
    "seed": integer(0, SEED64), "batch_size": integer(1), "lr": number(0, lo_open=True), "warmup_steps": integer(0),
    "grad_clip": number(0, lo_open=True, null=True), "ema_decay": number(0, 1, hi_open=True), "max_steps": integer(0),
    "max_minutes": number(0, lo_open=True, null=True), "eval_every": integer(1), "eval_images": integer(1),
    "log_every": integer(1), "save_every": integer(1), "threads": integer(1, null=True),
}
GROUPS = ("dataset", "prior", "operator", "quantizer", "method", "metrics", "logger")
# Top-level keys besides TOP and GROUPS: anything else (+profile=tiny, where no such group exists) is a typo.
OTHER_TOP = ("m", "device", "cache_dir", "results_dir", "optimized_metric", "run_dir")
# Keywords the set-up gives a component (not settings a config may hold).
GIVEN = ("shape", "m", "split", "train", "prior")


def component(node: dict):
    """The class or factory function a node's ``_target_`` names, imported (None: it cannot be)."""
    return named_class(node.get("_target_")) if isinstance(node, dict) else None


def option_name(group: str, node: dict) -> str:
    return str(node.get("name") or str(node.get("_target_", group)).rsplit(".", 1)[-1])


def check_group(group: str, node) -> None:
    """A group's node: every key one its component takes, every value what it declares."""
    if not isinstance(node, dict):
        raise ConfigError(f"{group}={shown(node)} is not a config group option: pick one with {group}=NAME.")
    obj = component(node)
    rules = declared(obj, group, node) if obj is not None else Settings(group, {})
    values = {k: v for k, v in node.items() if not k.startswith("_")}
    for key in values:
        if rules.keys is not None and key not in rules.keys:
            settable = sorted(rules.keys - set(GIVEN))
            allowed = f"use one of {', '.join(settable)}" if settable else "it takes no settings"
            raise ConfigError(f"{group}.{key} is not a setting of {group}={option_name(group, node)}: {allowed}.")
    if "name" in values and "name" not in rules.rules:  # an option's name labels its results
        text().check(f"{group}.name", values["name"])
    rules.check(values)


def check_across_groups(config: dict) -> None:
    """The rules that span groups: a prior fitted on data (its node has ``train``) needs a
    dataset with a train split; a channel that does not quantize to ``bits`` levels leaves bits
    at 1; several samples per image need a method that samples (``point_estimate`` false); a
    component's own ``check_config`` (e.g. a method that needs the channel's noise)."""
    dataset, prior, channel = (config.get(g, {}) for g in ("dataset", "prior", "quantizer"))
    data = component(dataset)
    if "train" in prior and hasattr(data, "has_splits") and not data.has_splits(Path(str(dataset["root"])).expanduser()):
        raise ConfigError(f"dataset.root={dataset['root']} is a flat folder (no train/ and test/ subfolders), so "
                          f"prior={option_name('prior', prior)} would be fitted on the test images: put training "
                          "images in root/train and test images in root/test, or use a network prior.")
    kind = component(channel)
    if kind is not None and not getattr(kind, "takes_bits", True) and config.get("bits", 1) != 1:
        raise ConfigError(f"bits={config['bits']} is not used by quantizer={kind.name} "
                          "(it does not quantize to bits levels): leave bits at 1, or use quantizer=uniform.")
    samples, method = config.get("num_samples", 1), config.get("method", {})
    if samples > 1 and getattr(component(method), "point_estimate", False):
        raise ConfigError(f"num_samples={samples} is not allowed for method={option_name('method', method)}, a point "
                          "estimate (the same measurements always give the same recovery): use num_samples=1.")
    for group in GROUPS:
        obj = component(config.get(group, {}))
        if hasattr(obj, "check_config"):
            obj.check_config(config)


def check_top(cfg, extra=()) -> None:
    """Every top-level key is one we read (a key added with + that nothing reads is refused,
    not silently ignored), and the knobs other values are computed from hold what they may."""
    known = {*TOP, *GROUPS, *OTHER_TOP, *extra}
    for key in cfg:
        if key not in known and key != "hydra":
            raise ConfigError(f"{key} is not a setting (no config group or top-level key has that name): "
                              f"use one of {', '.join(sorted(known))}.")
    for key, rule in TOP.items():  # before resolution: m = bit_budget / bits is computed from them
        if key in cfg and not OmegaConf.is_missing(cfg, key) and not OmegaConf.is_interpolation(cfg, key):
            rule.check(key, cfg[key])


def resolved(cfg) -> dict:
    """The config with every interpolation evaluated, as a plain dict; the first mandatory value
    (???) left unset, dataset.root first, or a value that cannot be evaluated is named."""
    try:
        unset = OmegaConf.missing_keys(cfg)
    except Exception:  # an interpolation that cannot be evaluated: named below
        unset = set()
    missing = next((k for k in ["dataset.root", *sorted(unset)] if k in unset), None)
    if missing:
        raise ConfigError(f"{missing} is not set: give it on the command line, e.g. {missing}=/path/to/data.")
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # a resolver or interpolation that cannot be evaluated
        key = getattr(err, "full_key", "") or "the config"
        raise ConfigError(f"{key} cannot be resolved ({str(err).splitlines()[0]}): fix that value.") from None
    config.pop("hydra", None)
    return config


def check_config(cfg, extra_keys=()) -> dict:
    """Check the composed config; return it resolved as a plain dict (for the result key and
    the logger). Raises ConfigError with one sentence at the first bad value. ``extra_keys``:
    the top-level keys a script reads besides run.py's."""
    check_top(cfg, extra_keys)
    config = resolved(cfg)
    for key, rule in TOP.items():
        if key in config:
            rule.check(key, config[key])
    resolve_device(config.get("device", "auto"))
    for key in ("results_dir", "cache_dir", "run_dir"):
        if config.get(key) is not None:
            writable_folder(key, config[key])
    for group in GROUPS:
        if group in config:
            check_group(group, config[group])
    check_across_groups(config)
    return config


def check_train_config(cfg) -> dict:
    """check_config for scripts/train.py: the training knobs (those the command line sets most,
    first), the shared groups as run.py checks them, the learner group and the output folder."""
    from qcsbench.priors.trained import trained_prior

    for key, rule in TRAIN.items():
        if key in cfg and not OmegaConf.is_interpolation(cfg, key):
            rule.check(key, cfg[key])
    config = check_config(cfg, (*TRAIN, "learner", "out_dir"))
    check_group("learner", config.get("learner"))
    if component(config["prior"]) is not trained_prior:
        raise ConfigError(f"prior={option_name('prior', config['prior'])} cannot start a learner, which fine-tunes a "
                          "score UNet trained by scripts/train_prior.py: use prior=ncsn_mnist or prior=trained "
                          "prior.checkpoint=....")
    writable_folder("out_dir", config["out_dir"])
    return config
