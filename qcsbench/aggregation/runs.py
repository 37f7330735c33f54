"""Sweep folders (or W&B) as runs: one row per run of a tidy pandas frame.

A run's settings come from the resolved config it saved (``config.yaml``, else
``.hydra/config.yaml``), never from folder names or tags, and its numbers from ``metrics.json``
(no such file: the run failed). The keys that are not part of a result (the logger, batch
size, device, progress bars, paths, resume: qcsbench/result_keys.py) are left out, so runs that
differ only in those are the same setting; ``num_images`` stays (a mean over other images).

Sweep folders are data from elsewhere: a run folder reached twice (``SWEEP SWEEP``, a link)
is read once; a run whose config or metrics cannot be read, or whose numbers are not numbers,
is marked failed with the reason. Configs are read as plain YAML, and only references to
other keys and the resolvers that read nothing else (``${div:}``, ``${oc.select:}``) are
resolved: ``${oc.env:NAME}``, ``${channel_label:}`` (it imports the class its config names) and
every other resolver stay text, so reading a foreign folder never reads the environment or
imports a module.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from qcsbench import metrics, result_keys, spread
from qcsbench.errors import ConfigError

QUALITY = tuple(metrics.ALL_NAMES)  # psnr, ssim, nmse, cosine, psnr_scaled, lpips (where the profile has it)
# A run with several samples per image adds the samples' own metrics (psnr_single, ...) and spread.
SAMPLED = spread.NAMES
COSTS = ("nfe", "seconds_per_image", "num_diverged", "num_resumed", "seconds")
SEEDS = ("seed", "operator.seed")  # what the runs of one setting differ in (averaged over)
# Pure functions of their arguments or of the config itself: resolved when reading a config.
SAFE_RESOLVERS = {"div", "oc.select"}
RESOLVER_CALL = re.compile(r"\$\{\s*([^\s:}${]+)\s*:")


def flatten(tree, prefix="") -> dict:
    """{"method": {"step_lr": 1e-4}} -> {"method.step_lr": 1e-4}; lists become their text."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value) if isinstance(value, (list, tuple)) else value
    return out


def settings_of(config: dict) -> dict:
    """The flattened config less the keys that are not settings (result_keys.is_setting), with the
    settings it was made without at the value it had (result_keys.DEFAULTS);
    ``group._target_`` becomes ``group`` (the group's ``name`` where it has one, else the
    target's last dotted part)."""
    flat = {k: v for k, v in {**result_keys.DEFAULTS, **flatten(config)}.items() if result_keys.is_setting(k)}
    for key in [k for k in flat if k.endswith("._target_")]:
        group = key[: -len("._target_")]
        target = flat.pop(key)
        flat[group] = flat.pop(f"{group}.name", None) or str(target).rsplit(".", 1)[-1]
    for key in [k for k in flat if k.count(".") == 1 and k.endswith(".name")]:  # a reported component
        flat[key[: -len(".name")]] = flat.pop(key)
    return {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] not in ("_recursive_", "_partial_")}


def as_run(config: dict, components: dict | None) -> dict:
    """The config with each component group replaced by what the built component reported
    (metrics.json's ``components``, W&B's ``described``): a knob the component does not use
    (bits for the logistic link, say) then shows as absent, not as the config's value."""
    if not components:
        return config
    out = dict(config)
    for group, described in components.items():
        out[group] = dict(described)
    channel, operator = components.get("quantizer", {}), components.get("operator", {})
    out.update(bits=channel.get("bits"), noise_std=channel.get("noise_std", config.get("noise_std")),
               m=operator.get("m", config.get("m")))
    return out


def checked_numbers(numbers) -> tuple[dict | None, str | None]:
    """(numbers, None), or (None, why) when a run's numbers cannot be used: not an object, a
    quality or cost that is neither null nor a finite number, components that are not objects."""
    if numbers is None:
        return None, None
    if not isinstance(numbers, dict):
        return None, f"its metrics are {type(numbers).__name__}, not an object"
    for name in [*(f"{n}_{s}" for n in QUALITY + SAMPLED for s in ("mean", "std")), *COSTS]:
        value = numbers.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            return None, f"its {name} is {value!r}, not a number"
        if value is not None and value < 0 and not name.endswith("_mean"):
            return None, f"its {name} is {value!r}, which cannot be negative"
    for name in ("result_id", "code_version", "image_fingerprint"):
        if not isinstance(numbers.get(name), (str, type(None))):
            return None, f"its {name} is {numbers[name]!r}, not text"
    components = numbers.get("components")
    if components is not None and not (isinstance(components, dict)
                                       and all(isinstance(v, dict) for v in components.values())):
        return None, "its components are not objects of settings"
    return numbers, None


def run_row(config: dict, numbers: dict | None, where: str, problem: str | None = None,
            borrowed: dict | None = None) -> dict:
    """One run: its settings, ``status`` (finished / failed), its numbers (None when failed), its
    result id and code version, and ``problem``: why a run that left files is failed. ``borrowed``:
    the components a finished run of the same config reported, for a run that reports none."""
    numbers, bad = checked_numbers(numbers)
    problem = problem or bad
    if problem:
        numbers = None
    row = settings_of(as_run(config, (numbers or {}).get("components") or borrowed))
    if borrowed and numbers is None:
        own = settings_of(config)
        row.update({k: own[k] for k in SEEDS if k in own})  # the seeds are the run's own
    row["run"] = where
    row["status"] = "finished" if numbers is not None else "failed"
    numbers = numbers or {}
    for name in QUALITY:
        row[f"{name}_mean"] = numbers.get(f"{name}_mean")
        row[f"{name}_std"] = numbers.get(f"{name}_std")
    for name in (n for n in SAMPLED if f"{n}_mean" in numbers):  # a column only where a run has it
        row[f"{name}_mean"] = numbers[f"{name}_mean"]
        row[f"{name}_std"] = numbers.get(f"{name}_std")
    for name in COSTS:
        row[name] = numbers.get(name)
    row.update(result_id=numbers.get("result_id"), code_version=numbers.get("code_version"),
               image_fingerprint=numbers.get("image_fingerprint"), problem=problem)
    return row


def _read_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"it holds {type(data).__name__}, not a mapping")
    return data


def _inert(value):
    """A config value with every interpolation that calls a resolver outside SAFE_RESOLVERS escaped
    (it stays text); plain references (${bits}) and our own resolvers still resolve."""
    if isinstance(value, dict):
        return {k: _inert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inert(v) for v in value]
    if isinstance(value, str) and "${" in value and set(RESOLVER_CALL.findall(value)) - SAFE_RESOLVERS:
        return value.replace("${", "\\${")
    return value


def load_config(job: Path) -> dict:
    """The run's resolved config (config.yaml, plain YAML), else Hydra's copy with only safe
    interpolations resolved (docstring at the top). Raises ValueError saying why neither can be read."""
    reasons = []
    for path in (job / "config.yaml", job / ".hydra" / "config.yaml"):
        if not path.is_file():
            continue
        try:
            data = _read_yaml(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as err:
            reasons.append(f"{path.relative_to(job)} cannot be read ({first_line(err)})")
            continue
        if path.name == "config.yaml" and path.parent == job:
            return data
        from qcsbench import resolvers

        resolvers.register()
        try:
            return OmegaConf.to_container(OmegaConf.create(_inert(data)), resolve=True)
        except Exception:  # an interpolation that cannot be resolved here: the settings as written
            return data
    raise ValueError("; ".join(reasons) or "it has no config.yaml")


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:120]


def experiment_of(job: Path) -> str | None:
    """The preset a run was started with (+experiment=NAME), from Hydra's record of its choices."""
    try:
        choices = _read_yaml(job / ".hydra" / "hydra.yaml")["hydra"]["runtime"]["choices"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, KeyError, TypeError):
        return None
    name = choices.get("experiment") if isinstance(choices, dict) else None
    return name if isinstance(name, str) else None


def config_key(config: dict) -> str:
    """The settings a config asks for, less its seeds: equal for the runs of one setting."""
    own = {k: v for k, v in settings_of(config).items() if k not in SEEDS}
    return json.dumps(own, sort_keys=True, default=str)


def rows_of(runs) -> list[dict]:
    """``run_row`` for each (config, numbers, where, problem). A run that failed reports no
    components (what was built, under the names the finished runs report: ``mnist-test``, not the
    config's ``embedded_mnist``), so it would sit in a cell of its own; it borrows those of a finished
    run made from the same config but for its seeds, and is counted (‡) in its setting's cell."""
    runs = list(runs)
    rows = [run_row(*run) for run in runs]
    keys = [config_key(config) for config, *_ in runs]
    described = {}
    for key, row, (_, numbers, _, _) in zip(keys, rows, runs):
        if row["status"] == "finished" and numbers.get("components"):
            described.setdefault(key, numbers["components"])
    return [run_row(*run, described[key]) if row["status"] == "failed" and key in described else row
            for key, row, run in zip(keys, rows, runs)]


def read_run(job: Path) -> tuple[dict, dict | None, str, str | None]:
    """One run folder as (config, numbers, where, problem); what cannot be read makes it a failed
    run that says why."""
    try:
        config, problem = load_config(job), None
    except ValueError as err:
        config, problem = {}, str(err)
    experiment = experiment_of(job)
    if experiment:  # a setting like any other: the preset's published numbers are matched by it
        config = dict(config, experiment=experiment)
    numbers = None
    if (job / "metrics.json").is_file():
        try:
            numbers = json.loads((job / "metrics.json").read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            problem = problem or f"metrics.json cannot be read ({first_line(err)})"
    return config, numbers, str(job), problem


def find_runs(folders) -> pd.DataFrame:
    """Every Hydra job under ``folders`` (a folder holding ``.hydra/``), one row each; a job
    reached twice (the same folder given twice, a link) is read once (``attrs["notes"]`` says so)."""
    runs, seen, repeated = [], set(), 0
    for folder in folders:
        if not Path(folder).is_dir():
            raise ConfigError(f"{folder} is not a folder: give the sweep folders that hold the runs.")
        for hydra_dir in sorted(Path(folder).rglob(".hydra")):
            job = hydra_dir.parent.resolve()
            if job in seen:
                repeated += 1
                continue
            seen.add(job)
            runs.append(read_run(job))
    frame = pd.DataFrame(rows_of(runs))
    frame.attrs["notes"] = [f"{repeated} run folders were reached twice and read once"] if repeated else []
    return frame


def from_wandb(path: str, group: str | None = None, api=None) -> pd.DataFrame:
    """The same frame from W&B: each run's logged config and summary. ``path`` is entity/project;
    ``api`` defaults to ``wandb.Api()``."""
    if api is None:
        import wandb

        api = wandb.Api()
    runs = []
    for run in api.runs(path, filters={"group": group} if group else {}):
        summary = dict(run.summary)
        finished = run.state == "finished" and summary.get("nfe") is not None  # the runner logs nfe last-but-always
        config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}  # W&B's own _wandb entry
        described = config.pop("described", None)
        config.pop("result_id", None)
        if finished:
            runs.append((config, dict(summary, components=described) if described else summary, run.url, None))
        else:  # a run that failed after building reported what it built
            runs.append((as_run(config, described), None, run.url, None))
    frame = pd.DataFrame(rows_of(runs))
    frame.attrs["notes"] = []
    return frame
