"""Everything an experiment is made of, built once from its config: the test set, the operator,
the channel, the method and (on first use: a run whose every image is resumed never needs it)
the prior. The runner, the scripts and the tests build their experiments here."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import OmegaConf

from qcsbench.device import resolve_device
from qcsbench.errors import ConfigError
from qcsbench.methods.base import check_prior_fits
from qcsbench.metrics import Profile
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, ImageRandom
from qcsbench.resolvers import named_class


def instantiate(node, **kwargs):
    """hydra.utils.instantiate, but a ConfigError raised by the target reaches the user
    as itself (Hydra wraps every exception in an InstantiationException)."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def problem_record(dataset, operator, channel) -> dict:
    """The problem an experiment poses, in the words the run reports: the test split's name and
    image shape, operator.describe() and the channel's describe() (also what a learned model file
    records it was trained for)."""
    return dict(dataset=dict(name=dataset.name, shape=list(dataset.shape)), operator=operator.describe(),
                quantizer=channel.describe())


def build_problem(cfg) -> tuple:
    """(test set, operator, channel) of the experiment ``cfg``, as ``build`` makes them for a run
    (which checks the test set and the method before it draws the operator): what training poses."""
    test_set = instantiate(cfg.dataset, split="test")
    channel = instantiate(cfg.quantizer)
    return test_set, build_operator(cfg, test_set.shape), channel


def build_prior(cfg, test_set, device):
    """The prior, checked against the data and moved to the device (the expensive step of a setup).
    A prior fitted on data (its config has a ``train`` key, as prior=gmm) gets the train split."""
    extra = {}
    if "train" in cfg.prior:
        train_set = instantiate(cfg.dataset, split="train")
        extra["train"] = train_set.batch(range(len(train_set)))
    prior = instantiate(cfg.prior, **extra)
    check_prior_fits(prior, test_set.shape)
    return prior.to(device, torch.float32)


@dataclass
class Setup:
    """One experiment's parts, built from its config ``cfg`` by ``build``."""

    cfg: object
    device: torch.device
    test_set: object
    operator: object
    channel: object
    method: object
    metrics: object = field(default_factory=Profile)  # how the recoveries are scored (the metrics= group)
    _prior: object = field(default=None, repr=False)
    _operator_on_device: object = field(default=None, repr=False)

    @property
    def prior(self):
        if self._prior is None:
            self._prior = build_prior(self.cfg, self.test_set, self.device)
        return self._prior

    @property
    def prior_built(self) -> bool:
        return self._prior is not None

    def problem(self, indices) -> tuple[Problem, torch.Tensor]:
        """The measured problem for these test images and their truth, both on the device. Each
        image's measurement noise comes from its own stream, so it does not depend on the batch."""
        if self._operator_on_device is None:
            self._operator_on_device = self.operator.to(self.device, torch.float32)
        x = self.test_set.batch(indices).to(self.device)
        stream = ImageRandom(self.cfg.seed, indices, MEASUREMENT, self.device)
        return Problem.measure(x, self._operator_on_device, self.channel, stream), x

    def describe(self) -> dict:
        """The settings reported everywhere (metrics.json, W&B), as the built objects hold them.
        A prior not built (every image resumed) is named by its config."""
        if not self.method.needs_prior:
            prior = dict(name="none")  # a learned method's network is named by its checkpoint in method
        elif self._prior is not None:
            prior = self._prior.describe()
        else:
            prior = dict(name=self.cfg.prior.get("name", "prior"))
        return dict(problem_record(self.test_set, self.operator, self.channel), method=self.method.describe(),
                    prior=prior)


def build_operator(cfg, shape):
    """The operator ``cfg`` names for images of ``shape``, its eigendecomposition of A A^T cached in
    ``cfg.cache_dir`` beside the fitted priors (a sweep, a training run and a benchmark share it)."""
    operator = instantiate(cfg.operator, shape=list(shape), m=cfg.m)
    operator.cache_dir = cfg.get("cache_dir")
    return operator


def build(cfg) -> Setup:
    """Build the cheap parts of the experiment ``cfg`` (a composed config); the prior waits for
    ``Setup.prior``."""
    test_set = instantiate(cfg.dataset, split="test")
    if cfg.num_images > len(test_set):
        raise ConfigError(f"num_images={cfg.num_images} is more than dataset {test_set.name} holds: "
                          f"use 1 to {len(test_set)}.")
    test_set.check(range(cfg.num_images))  # a corrupt image file stops the run now, not when its batch comes up
    channel, method = instantiate(cfg.quantizer), instantiate(cfg.method)
    profile = instantiate(cfg.metrics) if cfg.get("metrics") is not None else Profile()
    prior_factory = named_class(cfg.prior.get("_target_", ""))
    if method.needs_prior and hasattr(prior_factory, "check_images"):  # before a prior's train split is read
        prior_factory.check_images(test_set.shape, cfg.prior)
    operator = build_operator(cfg, test_set.shape)  # last: a dense A at FFHQ size takes minutes and gigabytes
    if hasattr(method, "check_problem"):  # a learned method meeting a problem it was not trained for stops here
        method.check_problem(problem_record(test_set, operator, channel))
    return Setup(cfg=cfg, device=resolve_device(cfg.device), test_set=test_set, operator=operator,
                 channel=channel, method=method, metrics=profile)


def method_names(config_dir) -> list[str]:
    """The methods a user can pick with method=NAME: the files of the config folder's method/ group."""
    return sorted(path.stem for path in (Path(config_dir) / "method").glob("*.yaml"))


def method_target(config_dir, name: str) -> str:
    """The class ``method=NAME`` builds, read from its YAML or, for a variant such as qcs_sgm_ep, from the
    method its defaults list extends (without composing the whole config)."""
    config = OmegaConf.load(Path(config_dir) / "method" / f"{name}.yaml")
    if "_target_" in config:
        return config._target_
    bases = [entry for entry in config.get("defaults", []) if isinstance(entry, str) and entry != "_self_"]
    if not bases:
        raise ConfigError(f"configs/method/{name}.yaml names no _target_ and extends no other method")
    return method_target(config_dir, bases[0])
