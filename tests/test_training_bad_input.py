"""scripts/train.py and the trained-prior files answer damaged or inconsistent input in one
sentence naming the file and what is wrong, before compute where that can be known: a resume
with other settings, a checkpoint missing a key, an out_dir no file can be written in, a NaN
loss, a model file with a setting that cannot work, a trained prior with a damaged field."""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from qcsbench.errors import ConfigError
from qcsbench.formats import learned_file
from qcsbench.formats import trained_file as trained_format
from qcsbench.networks.idm import IDMNet
from qcsbench.priors.trained import trained_prior
from qcsbench.setup import build
from qcsbench.training.learner import train
from tests.conftest import CONFIGS
from tests.prior_files import trained_file

pytestmark = pytest.mark.in_process


def train_cfg(tmp_path, *overrides):
    prior = tmp_path / "prior.pt"
    if not prior.exists():
        trained_file(prior)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[
            "prior=trained", f"prior.checkpoint={prior}", f"out_dir={tmp_path / 'train'}", "batch_size=4",
            "eval_images=4", "eval_every=2", "save_every=2", "log_every=1", "m=60", "learner.steps=1",
            "logger=none", *overrides])


@pytest.fixture
def trained(tmp_path):
    """A two-step training run in tmp_path/train (checkpoint.pt and model.pt)."""
    train(train_cfg(tmp_path, "max_steps=2"))
    return tmp_path / "train"


def test_resuming_with_other_training_settings_names_each_one(tmp_path, trained):
    with pytest.raises(ConfigError) as err:
        train(train_cfg(tmp_path, "max_steps=4", "lr=1e-3", "seed=1", "batch_size=2"))
    text = str(err.value)
    assert text.startswith(f"{trained / 'checkpoint.pt'} was trained with other settings (batch_size (trained 4, "
                           "here 2); lr (trained 0.0002, here 0.001); seed (trained 0, here 1)): resume with the values")
    assert "\n" not in text
    assert learned_file.read(trained / "checkpoint.pt")["step"] == 2  # nothing was trained on
    more = train(train_cfg(tmp_path, "max_steps=4", "eval_every=1", "threads=1"))  # when and how long: free
    assert more["step"] == 4


@pytest.mark.parametrize("key", ["optimizer", "model", "step", "train_config"])
def test_a_checkpoint_missing_a_key_is_named(tmp_path, trained, key):
    path = trained / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state[key]
    torch.save(state, path)
    # every model file's fields (step among them) are checked when the file is read, the rest on resume
    words = (rf"^out_dir checkpoint={path} is damaged: its field '{key}' is missing\.$" if key in learned_file.FIELDS
             else rf"^{path} lacks {key}, which a checkpoint.pt of scripts/train.py holds")
    with pytest.raises(ConfigError, match=words):
        train(train_cfg(tmp_path, "max_steps=4"))


def test_a_checkpoint_with_weights_of_another_shape_is_named(tmp_path, trained):
    path = trained / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(ConfigError, match=rf"^out_dir checkpoint {path} does not fit the configured"):
        train(train_cfg(tmp_path, "max_steps=4"))


def test_an_out_dir_no_file_can_be_written_in_is_refused_before_the_network_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr("qcsbench.training.learner.Training.__init__", None)  # nothing may be built
    with pytest.raises(ConfigError, match=r"^out_dir=/proc/qcsbench-train is not writable"):
        train(train_cfg(tmp_path, "out_dir=/proc/qcsbench-train"))


def test_a_nan_loss_is_one_sentence_and_the_last_checkpoint_stays(tmp_path, trained, monkeypatch):
    monkeypatch.setattr(IDMNet, "loss", lambda self, problem, x, noise: torch.tensor(float("nan")))
    with pytest.raises(ConfigError, match=r"^the training loss is nan at step 2: lower lr or grad_clip"):
        train(train_cfg(tmp_path, "max_steps=4"))
    assert learned_file.read(trained / "checkpoint.pt")["step"] == 2


@pytest.mark.parametrize("key,value,words", [
    ("steps", 0, "the file's steps=0 is not allowed"),
    ("consistency", "exact", "the file's consistency=exact is not allowed"),
])
def test_a_model_file_setting_that_cannot_work_is_named_under_method_checkpoint(tmp_path, trained, make_cfg, key,
                                                                                value, words):
    path = tmp_path / "model.pt"
    state = torch.load(trained / "model.pt", weights_only=True)
    state["spec"][key] = value
    torch.save(state, path)
    with pytest.raises(ConfigError) as err:
        build(make_cfg("method=idm", f"method.checkpoint={path}", "m=60"))
    text = str(err.value)
    assert text.startswith(f"method.checkpoint={path} holds network settings that cannot work ({words}")
    assert "learner." not in text


# --- trained-prior files (prior=trained, scripts/train_prior.py) -------------------------------------

DAMAGE = [
    ("num_levels", 0, "num_levels is 0, which cannot work"), ("num_levels", None, "num_levels is missing"),
    ("num_levels", 2.5, "num_levels is 2.5"), ("sigma_max", "big", "sigma_max is 'big'"),
    ("sigma_min", float("nan"), "sigma_min is nan"), ("sigma_min", 100.0, "sigma_max 50.0 is not above sigma_min 100.0"),
    ("shape", [1, 28], "shape is [1, 28]"), ("shape", None, "shape is missing"), ("ema", [1, 2], "ema is [1, 2]"),
    ("config", None, "config is missing"), ("config", "unet", "config is 'unet'"),
    ("step", -1, "step is -1"), ("config.channels", [], "config.channels is []"),
    ("config.emb_dim", 15, "config.emb_dim is 15"),
    ("config.foo", 1, "config holds foo, which the score UNet does not take"),
]


@pytest.mark.parametrize("field,value,words", DAMAGE)
def test_a_damaged_trained_prior_file_is_named(tmp_path, field, value, words):
    path = tmp_path / "prior.pt"
    trained_file(path)
    state = torch.load(path, weights_only=True)
    head, _, sub = field.partition(".")
    target, name = (state[head], sub) if sub else (state, head)
    if value is None:
        del target[name]
    else:
        target[name] = value
    torch.save(state, path)
    with pytest.raises(ConfigError) as err:
        trained_prior(checkpoint=path)
    assert str(err.value).startswith(f"prior.checkpoint={path} is a damaged trained-prior file ({words}")
    assert "\n" not in str(err.value)


def test_a_score_unet_config_that_cannot_be_built_is_named(tmp_path):
    path = tmp_path / "prior.pt"
    trained_file(path)
    state = torch.load(path, weights_only=True)
    state["config"]["channels"] = [12, 12]  # GroupNorm(8) cannot split 12 channels
    torch.save(state, path)
    with pytest.raises(ConfigError, match=rf"^prior.checkpoint={path} holds a score UNet config that cannot be built"):
        trained_prior(checkpoint=path)


def test_a_resumable_prior_checkpoint_needs_its_weights_and_optimizer(tmp_path):
    path = tmp_path / "prior.pt"
    trained_file(path)  # EMA weights only: a prior, not a checkpoint training resumes from
    assert trained_format.read(path)["num_levels"] == 232
    with pytest.raises(ConfigError, match=r"is a damaged trained-prior file \(model is missing\)"):
        trained_format.read(path, "checkpoint", checkpoint=True)
