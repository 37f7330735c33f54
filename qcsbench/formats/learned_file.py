"""The file scripts/train.py writes and learned methods (method=idm, method=restoregrad) read.

A dict: format (FORMAT), learner (the network class, "module:Class"), spec (the keyword
arguments that rebuild it, the backbone's architecture included), problem (what it was
trained for: dataset name and shape, operator, quantizer, as the run's metrics.json
reports them: setup.problem_record), ema (the EMA weights, what recovery uses), step, loss, eval_psnr and
train_config; the resumable checkpoint.pt also holds model and optimizer.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from qcsbench import fingerprint
from qcsbench.errors import ConfigError
from qcsbench.files import save_tensors
from qcsbench.formats.checkpoints import first_line, load_file, load_state

FORMAT = "qcsbench-learned-v1"

# The only network classes a model file may name, by learner (configs/learner/<name>.yaml). A file
# is data: the class it names is looked up here, never imported from wherever the file points. Each
# is named by the method module that builds it (the class itself lives in qcsbench/networks/), the
# name files have held since the format began.
LEARNERS = {"idm": "qcsbench.methods.idm:IDMNet", "restoregrad": "qcsbench.methods.restoregrad:RestoreGradNet"}

# The fields every model file holds and the type each must have.
FIELDS = dict(learner=str, spec=dict, problem=dict, ema=dict, step=int)


def write(path, *, learner: str, spec: dict, problem: dict, ema: dict, step: int, loss, eval_psnr,
          train_config: dict, model: dict | None = None, optimizer: dict | None = None):
    out = dict(format=FORMAT, learner=learner, spec=spec, problem=problem, ema=ema, step=int(step), loss=loss,
               eval_psnr=eval_psnr, train_config=train_config)
    if model is not None:
        out.update(model=model, optimizer=optimizer)
    return save_tensors(path, out)


def read(path, key: str = "method.checkpoint", learner: str | None = None) -> dict:
    """The model file at ``path`` as a dict, its fields checked; ``learner`` (a LEARNERS name):
    the file must hold that learner's network."""
    state = load_file(path, key)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{key}={path} is not a model written by scripts/train.py (no format {FORMAT!r}): "
                          "give the model.pt of a training run folder.")
    for field, kind in FIELDS.items():
        value = state.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            what = "is missing" if field not in state else f"has type {type(value).__name__}, not {kind.__name__}"
            raise ConfigError(f"{key}={path} is damaged: its field {field!r} {what}.")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["ema"].items()):
        raise ConfigError(f"{key}={path} is damaged: its field 'ema' is not a dict of named tensors.")
    named = learner_name(state["learner"], key, path)
    if learner is not None and named != learner:
        raise ConfigError(f"{key}={path} holds a model of learner={named}, not of learner={learner}: evaluate it "
                          f"with method={named}, or give a model trained with learner={learner}.")
    return state


def learner_name(learner: str, key: str, path) -> str:
    """The LEARNERS name of a model file's network class; any other class is refused."""
    for name, cls in LEARNERS.items():
        if learner == cls:
            return name
    raise ConfigError(f"{key}={path} names the network class {learner!r}, which is not one of qcsbench's "
                      f"learners ({', '.join(LEARNERS.values())}): only models written by scripts/train.py are read.")


def network_class(learner: str):
    """The class of an allow-listed learner ("module:Class" as LEARNERS spells it)."""
    if learner not in LEARNERS.values():
        raise ConfigError(f"the network class {learner!r} is not one of qcsbench's learners "
                          f"({', '.join(LEARNERS.values())}).")
    module, name = learner.split(":")
    return getattr(importlib.import_module(module), name)


def learner_of(net) -> str:
    """The LEARNERS entry naming the class of ``net``: what a model file of it holds."""
    for learner in LEARNERS.values():
        if network_class(learner) is type(net):
            return learner
    raise ConfigError(f"{type(net).__name__} is not one of qcsbench's learners ({', '.join(LEARNERS.values())}).")


def load_network(state: dict, key: str, weights: str = "ema"):
    """The network a learned-model dict describes, with its EMA (or raw ``model``) weights."""
    try:
        net = network_class(state["learner"]).rebuild(state["spec"])
    except ConfigError as err:  # a value the learner refuses, reported under the file, not learner.<knob>
        refused = str(err).removeprefix("learner.").rstrip(".")
        raise ConfigError(f"{key} holds network settings that cannot work (the file's {refused}): give a model.pt "
                          "written by scripts/train.py.") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
        raise ConfigError(f"{key} is damaged: its spec does not rebuild a {state['learner']} "
                          f"({type(err).__name__}: {first_line(err)}).") from None
    load_state(net, state[weights], key, state["learner"])
    return net.eval().requires_grad_(False)


def file_digest(path) -> str:
    """The first 16 hex digits of the file's SHA-256: results of different weights never share a key."""
    return fingerprint.sha256_of(Path(path))[:16]


def flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def mismatch(trained: dict, current: dict) -> list[str]:
    """'key: trained A, here B' for every entry where the two problem records differ."""
    a, b = flatten(trained), flatten(current)
    return [f"{k} (trained {a.get(k)}, here {b.get(k)})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_problem(state: dict, current: dict, key: str, allow_mismatch: bool) -> None:
    """Stop, in one sentence naming what differs, when a model meets a problem it was not trained for."""
    diffs = mismatch(state["problem"], current)
    if diffs and not allow_mismatch:
        raise ConfigError(f"{key} was trained for another problem: {'; '.join(diffs)}; evaluate it on the "
                          "problem it was trained for, train one for this problem with scripts/train.py, or set "
                          "method.allow_mismatch=true for a transfer experiment.")
