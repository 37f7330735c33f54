"""Files from a shared folder are data: a learned model file, a diffusers folder or a cache that
was edited, damaged or written by someone else runs no code, contacts no server and changes no
number silently; each stops with one sentence naming the file and what is wrong with it."""
import copy
import json
import os

import pytest
import torch

from qcsbench.errors import ConfigError
from qcsbench.learned import learned_file
from qcsbench.setup import instantiate

MARKER = "/tmp/qcsbench-foreign-module-ran"
IDM = learned_file.WEIGHTS / "idm_mnist_1bit_m200.pt"
RESTOREGRAD = learned_file.WEIGHTS / "restoregrad_mnist_1bit_m200.pt"


def edited(tmp_path, source, change, name="model.pt"):
    """A copy of a shipped model file with ``change(state)`` applied."""
    state = torch.load(source, weights_only=True)
    change(state)
    torch.save(state, tmp_path / name)
    return tmp_path / name


def setter(path, value):
    def change(state):
        *inner, last = path
        target = state
        for key in inner:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return change


# (method, edit of the shipped idm model, text the sentence must hold)
LEARNED_CASES = [
    ("idm", setter(["learner"], "os:system"), "names the network class 'os:system', which is not one of"),
    ("idm", setter(["learner"], "qcsbench.methods.idm"), "is not one of qcsbench's learners"),
    ("idm", setter(["learner"], 5), "its field 'learner' is a int, not a str"),
    ("idm", setter(["spec"], KeyError), "its field 'spec' is missing, not a dict"),
    ("idm", setter(["spec"], "steps=3"), "its field 'spec' is a str, not a dict"),
    ("idm", setter(["problem"], None), "its field 'problem' is a NoneType, not a dict"),
    ("idm", setter(["ema"], [1, 2]), "its field 'ema' is a list, not a dict"),
    ("idm", setter(["ema"], {"unet.w": 1.0}), "its field 'ema' is not a dict of named tensors"),
    ("idm", setter(["step"], "10"), "its field 'step' is a str, not a int"),
    ("idm", setter(["step"], True), "its field 'step' is a bool, not a int"),
    ("idm", setter(["format"], "qcsbench-learned-v0"), "is not a model written by scripts/train.py"),
    ("idm", setter(["spec", "steps"], 0), "holds a spec its network refuses: learner.steps=0 is not allowed"),
    ("idm", setter(["spec", "unet"], KeyError), "its spec does not rebuild a qcsbench.methods.idm:IDMNet"),
    ("idm", setter(["spec", "unet", "channels"], "wide"), "its spec does not rebuild"),
    ("idm", setter(["spec", "bogus"], 1), "its spec does not rebuild"),
    ("idm", setter(["ema", "injectors.2.6.out.bias"], torch.zeros(3)), "does not fit the configured"),
    ("restoregrad", lambda s: None, "holds a model of learner=idm, not of learner=restoregrad: evaluate it "
                                    "with method=idm"),
]


def method_from(make_cfg, method, path):
    return instantiate(make_cfg(f"method={method}", f"method.checkpoint={path}").method)


@pytest.mark.parametrize("method,change,message", LEARNED_CASES)
def test_an_edited_learned_model_file_stops_with_one_sentence(make_cfg, tmp_path, method, change, message):
    path = edited(tmp_path, IDM, change)
    with pytest.raises(ConfigError) as err:
        method_from(make_cfg, method, path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text and text.endswith(".")


def test_a_restoregrad_model_given_to_idm_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="holds a model of learner=restoregrad, not of learner=idm"):
        method_from(make_cfg, "idm", RESTOREGRAD)


def test_a_model_file_naming_a_module_beside_it_runs_no_code(make_cfg, tmp_path, monkeypatch):
    """The attack of the issue: a .py placed beside a shared model.pt, on the import path (as
    outputs/ is, a namespace package under the current folder), named by the file."""
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    (tmp_path / "planted.py").write_text(
        f"open({MARKER!r}, 'w').close()\n"
        "class Net:\n    @classmethod\n    def rebuild(cls, spec):\n        raise SystemExit('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = edited(tmp_path, IDM, setter(["learner"], "planted:Net"))
    with pytest.raises(ConfigError, match="names the network class 'planted:Net'"):
        method_from(make_cfg, "idm", path)
    with pytest.raises(ConfigError, match="is not one of qcsbench's learners"):
        learned_file.network_class("planted:Net")
    assert not os.path.exists(MARKER)


def test_the_shipped_models_still_load_as_their_methods(make_cfg):
    assert method_from(make_cfg, "idm", IDM).steps == 3
    assert method_from(make_cfg, "restoregrad", RESTOREGRAD).steps == 20
