"""The file scripts/train.py writes and learned methods (method=idm, method=restoregrad) read.

A dict: format (FORMAT), learner (the network class, "module:Class"), spec (the keyword
arguments that rebuild it, the backbone's architecture included), problem (what it was
trained for: dataset name and shape, operator, quantizer, as the run's metrics.json
reports them), ema (the EMA weights, what recovery uses), step, loss, eval_psnr and
train_config; the resumable checkpoint.pt also holds model and optimizer.
"""
from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from qcsbench.errors import ConfigError
from qcsbench.files import save_tensors
from qcsbench.priors.checkpoints import load_file, load_state
from qcsbench.priors.score_unet import ScoreUNet

FORMAT = "qcsbench-learned-v1"
WEIGHTS = Path(__file__).resolve().parent / "weights"


class SpecOnUNet:
    """``spec()`` and ``rebuild(spec)`` for a learned network whose constructor takes a ScoreUNet
    and the keyword ``settings`` it keeps: the spec is what the model file stores to rebuild it."""

    def spec(self) -> dict:
        return dict(unet=dict(self.unet.config), **self.settings)

    @classmethod
    def rebuild(cls, spec: dict):
        spec = dict(spec)
        return cls(ScoreUNet(**spec.pop("unet")), **spec)


def problem_record(dataset, operator, channel) -> dict:
    """What a learned method is trained for, in the words the run reports: the test split's
    name and image shape, operator.describe() and the channel's describe()."""
    return dict(dataset=dict(name=dataset.name, shape=list(dataset.shape)), operator=operator.describe(),
                quantizer=channel.describe())


def write(path, *, learner: str, spec: dict, problem: dict, ema: dict, step: int, loss, eval_psnr,
          train_config: dict, model: dict | None = None, optimizer: dict | None = None):
    out = dict(format=FORMAT, learner=learner, spec=spec, problem=problem, ema=ema, step=int(step), loss=loss,
               eval_psnr=eval_psnr, train_config=train_config)
    if model is not None:
        out.update(model=model, optimizer=optimizer)
    return save_tensors(path, out)


def read(path, key: str = "method.checkpoint") -> dict:
    state = load_file(path, key)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{key}={path} is not a model written by scripts/train.py (no format {FORMAT!r}): "
                          "give the model.pt of a training run folder.")
    return state


def network_class(learner: str):
    module, name = learner.split(":")
    return getattr(importlib.import_module(module), name)


def load_network(state: dict, key: str, weights: str = "ema"):
    """The network a learned-model dict describes, with its EMA (or raw ``model``) weights."""
    net = network_class(state["learner"]).rebuild(state["spec"])
    load_state(net, state[weights], key, state["learner"])
    return net.eval().requires_grad_(False)


def file_digest(path) -> str:
    """The first 16 hex digits of the file's SHA-256: results of different weights never share a key."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


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
