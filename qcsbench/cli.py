"""The command line. ``qcsbench ARGS`` (installed) and ``python run.py ARGS`` (in the checkout)
run the same Hydra task; the first reads the configs shipped in the package
(``pkg://qcsbench.configs``), the second the checkout's ``configs/`` folder.

The task returns one number, the config's ``optimized_metric`` (default ``psnr_mean``), so
Hydra's sweepers that optimise (Optuna: ``hparams_search=...``) can use it; Python callers of
``qcsbench.runner.run`` get the whole summary dict.

Every entry point (run.py, the scripts) answers a bad input the same way: one line
``error: ...`` on stderr and exit status 2 (``fail``, ``one_sentence``, ``ScriptArguments``).
Hydra composes the config before our task runs and reports an unknown option or key in many
lines; ``hydra_main`` composes the command line once beforehand (each value of a sweep once)
to say it in one sentence.
"""
from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import OmegaConf

from qcsbench import resolvers
from qcsbench.errors import ConfigError, unwritable

resolvers.register()  # before Hydra composes the config the command line names


class JobConfigError(CompactHydraException):
    """A bad value in one job of a sweep: Hydra prints its message alone, without a traceback."""


def fail(sentence) -> None:
    """End the program the way every bad input ends: one line on stderr, exit status 2."""
    print(f"error: {sentence}", file=sys.stderr)
    sys.exit(2)


def user_error(err: BaseException) -> str | None:
    """The sentence for an error that is the user's to fix (a bad value, a full or read-only
    disk), or None for anything else (a bug, which keeps its traceback)."""
    return str(err) if isinstance(err, ConfigError) else unwritable(err)


def one_sentence(fn, *args, **kwargs):
    """fn(*args, **kwargs); a user's error ends the program with one line and exit status 2."""
    try:
        return fn(*args, **kwargs)
    except (ConfigError, OSError) as err:
        sentence = user_error(err)
        if sentence is None:
            raise
        fail(sentence)


class ScriptArguments(argparse.ArgumentParser):
    """argparse for the scripts: a bad argument is one line ``error: ...`` with exit status 2,
    as a bad config value is (argparse prints its usage block first)."""

    def error(self, message):
        fail(f"{message}: see {self.prog} --help.")


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not allowed (use a positive integer)")
    return value


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
    """fn(cfg); a bad value (ConfigError) or a folder that cannot be written ends a single run
    with one line and exit status 2, and fails only its own job in a sweep. scripts/train.py
    runs its training through this too."""
    try:
        return fn(cfg)
    except (ConfigError, OSError) as err:
        sentence = user_error(err)
        if sentence is None:
            raise
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            # the launcher marks this job failed and carries on with the others; the job's log says why
            logging.getLogger("qcsbench").error("error: %s", sentence)
            raise JobConfigError(f"error: {sentence}") from None
        fail(sentence)


def task(cfg) -> float:
    """Run one experiment; return its ``optimized_metric`` as a float (NaN where every image
    diverged: Optuna then marks the trial failed)."""
    from qcsbench.device import match_slurm_threads
    from qcsbench.runner import run

    match_slurm_threads()

    def metric(c):
        name = optimized_metric(c)  # a wrong name stops before the run, not after it
        return run(c)[name]

    value = run_safely(metric, cfg)
    return float("nan") if value is None else float(value)


# --- the command line, composed once before Hydra runs the task -------------------------------------

def composition_error(err: Exception, overrides: list[str], compose) -> str:
    """One sentence for a config Hydra cannot compose from ``overrides``."""
    if isinstance(err, MissingConfigException) and err.options:
        missing = re.search(r"Could not find '([^']+)'", str(err))
        if missing:
            group, _, option = missing.group(1).rpartition("/")
            return f"{group}={option} is not an option of {group}: use one of {', '.join(err.options)}."
    unknown = re.match(r"Could not override '([^']+)'", str(err))
    if unknown and "not in struct" in str(err.__cause__):
        key = unknown.group(1)
        parent, _, _ = key.rpartition(".")
        named = [(o.lstrip("+~").split("=", 1)[0], o) for o in overrides]
        # the group as composed without any of its settings (another may be unknown too)
        others = [o for k, o in named if k != key and not (parent and k.startswith(parent + "."))]
        try:
            cfg = compose(others)
        except Exception:
            cfg = None
        node = OmegaConf.select(cfg, parent) if cfg is not None and parent else cfg
        if node is not None and OmegaConf.is_dict(node):
            keys = ", ".join(k for k in node if k != "hydra" and not k.startswith("_"))
            choice = cfg.hydra.runtime.choices.get(parent) if parent else None
            where = f"{parent}={choice}" if choice else (parent or "the config")
            return f"{key} is not a setting of {where}: use one of {keys}."
    first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
    return f"the command line cannot be composed into a config ({first})."


def check_readable(overrides: list[str]) -> None:
    """Each override parses as Hydra's grammar; one at a time, so the sentence names the one that does not."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for line in overrides:
        try:
            parser.parse_overrides([line])
        except HydraException as err:
            first = (str(err).strip().splitlines() or ["unreadable"])[0]
            raise ConfigError(f"{line} cannot be read ({first}): write key=value, group=option or +key=value.") from None


def jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists to compose: the command line itself, or in a sweep each value of each
    swept key once (the other keys at their first value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    check_readable(overrides)
    if not multirun:
        return [overrides]
    values = []
    for override in parser.parse_overrides(overrides):
        key = override.get_key_element()
        if not override.is_sweep_override():
            values.append([override.input_line])
        elif override.is_discrete_sweep():
            values.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        # a sweep over an interval (Optuna) has no values to list: its jobs are checked as they run
    first = [v[0] for v in values]
    out = [first]
    for i, options in enumerate(values):
        out += [first[:i] + [option] + first[i + 1:] for option in options[1:]]
    return out


def check_command_line(config_path: str, config_name: str, argv: list[str]) -> None:
    """Compose the config the way Hydra is about to, so that an unknown option or key, or a run
    folder that cannot be written, stops in one sentence (a ConfigError)."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra._internal.utils import get_args_parser

    from qcsbench.files import writable_folder

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.config_path or args.config_dir:
        return  # Hydra's own answers, or a search path we would have to re-create
    name = args.config_name or config_name
    if config_path.startswith("pkg://"):
        context = functools.partial(initialize_config_module, config_module=config_path[len("pkg://"):])
    else:
        context = functools.partial(initialize_config_dir, config_dir=config_path)

    def compose_with(overrides):
        with context(version_base="1.3"):
            return compose(name, overrides=overrides, return_hydra_config=True)

    for overrides in jobs(args.overrides, args.multirun):
        try:
            cfg = compose_with(overrides)
        except Exception as err:  # Hydra raises several types; each becomes one sentence
            raise ConfigError(composition_error(err, overrides, compose_with)) from None
    key = "hydra.sweep.dir" if args.multirun else "hydra.run.dir"
    try:
        folder = OmegaConf.select(cfg, key)
    except Exception:  # a folder named by a value only the job knows: Hydra reports it
        return
    writable_folder(key, folder)


def hydra_main(config_path: str, config_name: str):
    """``hydra.main`` for our entry points, with the command line checked first (check_command_line)."""
    def wrap(task_function):
        hydra_task = hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(task_function)

        @functools.wraps(task_function)
        def entry():
            one_sentence(check_command_line, config_path, config_name, sys.argv[1:])
            return hydra_task()
        return entry
    return wrap


@hydra_main(config_path="pkg://qcsbench.configs", config_name="config")
def main(cfg) -> float:
    return task(cfg)
