"""The command line. ``qcsbench ARGS`` (installed) and ``python run.py ARGS`` (in the checkout)
run the same Hydra task; the first reads the configs shipped in the package
(``pkg://qcsbench.configs``), the second the checkout's ``configs/`` folder.

The task returns one number, the config's ``optimized_metric`` (default ``psnr_mean``), so
Hydra's sweepers that optimise (Optuna: ``hparams_search=...``) can use it; Python callers of
``qcsbench.runner.run`` get the whole summary dict.
"""
from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode

from qcsbench import resolvers
from qcsbench.errors import ConfigError

resolvers.register()  # before Hydra composes the config the command line names


class JobConfigError(CompactHydraException):
    """A bad value in one job of a sweep: Hydra prints its message alone, without a traceback."""


def optimizable() -> tuple[str, ...]:
    """The numbers of metrics.json a sweeper can optimise."""
    from qcsbench import metrics  # torch and torchmetrics load here, not before Hydra has read the command line

    quality = (f"{name}_{stat}" for name in metrics.NAMES for stat in ("mean", "std"))
    return (*quality, "nfe", "seconds", "seconds_per_image", "num_diverged")


def optimized_metric(cfg) -> str:
    name = cfg.get("optimized_metric", "psnr_mean")
    if name not in optimizable():
        raise ConfigError(f"optimized_metric={name} is not allowed: use one of {', '.join(optimizable())}.")
    return name


def run_safely(fn, cfg):
    """fn(cfg); a bad value (ConfigError) ends a single run with one line and exit status 2, and
    fails only its own job in a sweep. scripts/train.py runs its training through this too."""
    try:
        return fn(cfg)
    except ConfigError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # the launcher marks this job failed and carries on with the others; the job's log says why
            logging.getLogger("qcsbench").error("error: %s", err)
            raise JobConfigError(f"error: {err}") from None
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def task(cfg) -> float:
    """Run one experiment; return its ``optimized_metric`` as a float (NaN where every image
    diverged: Optuna then marks the trial failed)."""
    from qcsbench.runner import run

    def metric(c):
        name = optimized_metric(c)  # a wrong name stops before the run, not after it
        return run(c)[name]

    value = run_safely(metric, cfg)
    return float("nan") if value is None else float(value)


@hydra.main(version_base="1.3", config_path="pkg://qcsbench.configs", config_name="config")
def main(cfg) -> float:
    return task(cfg)
