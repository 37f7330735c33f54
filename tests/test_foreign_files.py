"""Files from a shared folder are data: a learned model file, a diffusers folder or a cache that
was edited, damaged or written by someone else runs no code, contacts no server and changes no
number silently; each stops with one sentence naming the file and what is wrong with it."""
import copy
import json
import os

import pytest
import torch

from qcsbench.errors import ConfigError
from qcsbench.formats import learned_file
from qcsbench.learned import WEIGHTS
from qcsbench.setup import instantiate

pytestmark = pytest.mark.in_process

MARKER = "/tmp/qcsbench-foreign-module-ran"
IDM = WEIGHTS / "idm_mnist_1bit_m200.pt"
RESTOREGRAD = WEIGHTS / "restoregrad_mnist_1bit_m200.pt"


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
    ("idm", setter(["learner"], 5), "its field 'learner' has type int, not str"),
    ("idm", setter(["spec"], KeyError), "its field 'spec' is missing"),
    ("idm", setter(["spec"], "steps=3"), "its field 'spec' has type str, not dict"),
    ("idm", setter(["problem"], None), "its field 'problem' has type NoneType, not dict"),
    ("idm", setter(["ema"], [1, 2]), "its field 'ema' has type list, not dict"),
    ("idm", setter(["ema"], {"unet.w": 1.0}), "its field 'ema' is not a dict of named tensors"),
    ("idm", setter(["step"], "10"), "its field 'step' has type str, not int"),
    ("idm", setter(["step"], True), "its field 'step' has type bool, not int"),
    ("idm", setter(["format"], "qcsbench-learned-v0"), "is not a model written by scripts/train.py"),
    ("idm", setter(["spec", "steps"], 0), "holds network settings that cannot work (the file's steps=0 is not allowed"),
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


# ------------------------------------------------------------------ diffusers folders

@pytest.fixture(scope="module")
def diffusers_folders(tmp_path_factory):
    from tests.prior_files import ddpm_folder, ncsnpp_folder

    root = tmp_path_factory.mktemp("diffusers")
    ddpm_folder(root / "ddpm")
    ncsnpp_folder(root / "ve")
    return root


def rewrite(folder, name, change):
    """Replace folder/name by change(its JSON) (a dict edit in place, or a new value returned)."""
    file = folder / name
    config = json.loads(file.read_text())
    new = change(config)
    file.write_text(json.dumps(config if new is None else new))


def damaged(tmp_path, source, name, change):
    import shutil

    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    if callable(change):
        rewrite(folder, name, change)
    elif change is None:
        (folder / name).unlink()
    else:
        (folder / name).write_bytes(change)
    return folder


# (prior kind, file, change, text of the sentence); change: a JSON edit, raw bytes, or None (file removed)
SCHED, UNET, WEIGHTS = "scheduler_config.json", "config.json", "diffusion_pytorch_model.safetensors"
DIFFUSERS_CASES = [
    ("ddpm", SCHED, lambda c: "google/ddpm-cifar10-32", "holds a string, not a JSON object of settings"),
    ("ddpm", SCHED, lambda c: [1, 2], "holds an array, not a JSON object"),
    ("ddpm", SCHED, b'{"num_train_timesteps": 10', "is not readable JSON"),
    ("ddpm", SCHED, b"\xff\xfe", "is not readable JSON"),
    ("ddpm", SCHED, lambda c: c.update(num_train_timesteps=0), "sets num_train_timesteps=0, which is not allowed"),
    ("ddpm", SCHED, lambda c: c.update(num_train_timesteps="1000"), 'sets num_train_timesteps="1000"'),
    ("ddpm", SCHED, lambda c: c.update(beta_schedule="foo"), "does not describe a DDPM noise schedule"),
    ("ddpm", SCHED, lambda c: c.update(beta_end=2.0), "cumulative alphas that do not decrease within (0, 1)"),
    ("ddpm", UNET, lambda c: "a string", "config.json holds a string"),
    ("ddpm", UNET, lambda c: None if c.clear() else None, None),  # an empty config: the defaults do not fit
    ("ddpm", UNET, lambda c: c.update(sample_size="big"), 'sets sample_size="big"'),
    ("ddpm", UNET, lambda c: c.update(sample_size=0), "sets sample_size=0"),
    ("ddpm", UNET, lambda c: c.update(in_channels=0), "sets in_channels=0"),
    ("ddpm", UNET, lambda c: c.update(_class_name="UNet2DConditionModel"), "describes a UNet2DConditionModel"),
    ("ddpm", UNET, lambda c: c.update(down_block_types=["NoSuchBlock2D", "DownBlock2D"]),
     "does not describe a UNet2DModel diffusers can build"),
    ("ddpm", UNET, lambda c: c.update(layers_per_block=2), "is not a checkpoint of the configured diffusers UNet2DModel"),
    ("ddpm", UNET, b"", "is not readable JSON"),
    ("ddpm", WEIGHTS, None, "holds no diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin"),
    ("ddpm", WEIGHTS, b"\x08\x00\x00\x00\x00\x00\x00\x00{}", "could not be read as safetensors"),
    ("ddpm", "model_index.json", b'"google/ddpm-cifar10-32"', "model_index.json holds a string"),
    ("ve", SCHED, lambda c: c.update(num_train_timesteps=0), "sets num_train_timesteps=0"),
    ("ve", SCHED, lambda c: c.update(sigma_min="small"), 'sets sigma_min="small"'),
    ("ve", SCHED, lambda c: c.update(sigma_max=float("inf")), "sets sigma_max=Infinity"),
    ("ve", SCHED, lambda c: c.update(sigma_max=0.001), "a VE ladder needs sigma_max > sigma_min"),
    ("ve", SCHED, lambda c: 3, "holds a number"),
]


@pytest.mark.parametrize("kind,name,change,message", DIFFUSERS_CASES)
def test_a_damaged_diffusers_folder_stops_with_one_sentence(diffusers_folders, tmp_path, kind, name, change,
                                                            message):
    from qcsbench.priors import diffusers_models

    folder = damaged(tmp_path, diffusers_folders / kind, name, change)
    with pytest.raises(ConfigError) as err:
        (diffusers_models.ddpm_prior if kind == "ddpm" else diffusers_models.ncsnpp_prior)(str(folder))
    text = str(err.value)
    assert str(folder) in text and "\n" not in text and text.endswith(".")
    assert message is None or message in text


@pytest.fixture
def no_network(monkeypatch):
    """Offline mode off (as on a user's machine) and every connection attempt a failure the test sees."""
    import socket

    import huggingface_hub.constants

    attempts = []

    def refuse(self, *args, **kwargs):
        attempts.append(args)
        raise OSError("the test forbids network access")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize("name", [SCHED, UNET])
def test_a_config_naming_a_hub_model_contacts_no_server(diffusers_folders, tmp_path, no_network, name):
    from qcsbench.priors import diffusers_models

    folder = damaged(tmp_path, diffusers_folders / "ddpm", name, lambda c: "google/ddpm-cifar10-32")
    with pytest.raises(ConfigError, match="holds a string, not a JSON object"):
        diffusers_models.ddpm_prior(str(folder))
    assert no_network == []


def test_the_unet_read_here_is_the_one_from_pretrained_gives(diffusers_folders, no_network):
    from diffusers import UNet2DModel

    from qcsbench.priors import diffusers_models

    for kind in ("ddpm", "ve"):
        ours = diffusers_models.load_unet(diffusers_folders / kind)
        theirs = UNet2DModel.from_pretrained(str(diffusers_folders / kind), local_files_only=True,
                                             low_cpu_mem_usage=False)
        theirs_config = {k: v for k, v in theirs.config.items() if k != "_name_or_path"}
        assert not ours.training and dict(ours.config) == theirs_config
        mine, other = ours.state_dict(), theirs.state_dict()
        assert mine.keys() == other.keys() and all(torch.equal(mine[k], other[k]) for k in mine)
        x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        assert torch.equal(ours(x, torch.tensor([10, 500])).sample, theirs(x, torch.tensor([10, 500])).sample)
    assert no_network == []
