"""Diffusers priors named by a Hugging Face model id, read from a local cache that the test writes."""
import json
import os
import subprocess
import sys

import huggingface_hub.constants
import pytest
import torch

from conftest import ROOT, run_cli
from qcsbench.errors import ConfigError
from qcsbench.priors.diffusers_models import ddpm_prior
from tests.prior_files import ddpm_folder

MODEL_ID = "test-org/tiny-ddpm"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """The hub cache layout: models--ORG--NAME/snapshots/<commit>/..., refs/main naming the commit."""
    hub = tmp_path_factory.mktemp("hf_home") / "hub"
    repo = hub / f"models--{MODEL_ID.replace('/', '--')}"
    ddpm_folder(repo / "snapshots" / REVISION, sample_size=8)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return hub


@pytest.fixture
def offline_cache(hub_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return hub_cache


@pytest.mark.in_process
def test_a_cached_model_id_loads_the_same_model_as_its_folder(offline_cache):
    by_id = ddpm_prior(path=MODEL_ID)
    by_folder = ddpm_prior(path=offline_cache / f"models--test-org--tiny-ddpm" / "snapshots" / REVISION)
    assert by_id.shape == (1, 8, 8)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(by_id.score(x, 0.5), by_folder.score(x, 0.5))


@pytest.mark.in_process
def test_a_model_id_not_in_the_cache_stops_with_one_sentence(offline_cache):
    with pytest.raises(ConfigError, match=r"^prior.path=google/ddpm-cifar10-32 is neither a folder nor a model in "
                                          r"the local Hugging Face cache \(.*hub\): fetch it once"):
        ddpm_prior(path="google/ddpm-cifar10-32")


@pytest.mark.e2e
def test_hf_home_points_a_fresh_process_at_the_cache(hub_cache):
    """The way a user sets it: HF_HOME (its hub/ folder is the cache), no network."""
    env = dict(os.environ, HF_HOME=str(hub_cache.parent), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("HF_HUB_CACHE", None)
    code = f"from qcsbench.priors.diffusers_models import ddpm_prior; print(ddpm_prior(path='{MODEL_ID}').shape)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("(1, 8, 8)")


@pytest.mark.in_process
def test_run_py_checks_accept_a_cached_model_id(offline_cache, make_cfg):
    """The config check looks the id up in the cache (it used to demand an existing folder)."""
    from qcsbench.validate import check_config

    config = check_config(make_cfg("prior=ddpm", f"prior.path={MODEL_ID}", "logger=none"))
    assert config["prior"]["path"] == MODEL_ID
    with pytest.raises(ConfigError, match=r"^prior.path=nobody/nothing is neither a folder nor a model in the local"):
        check_config(make_cfg("prior=ddpm", "prior.path=nobody/nothing", "logger=none"))


@pytest.mark.e2e
def test_run_py_recovers_with_a_cached_model_id(hub_cache, tmp_path):
    """python run.py prior.path=ORG/NAME, as the README promises, with HF_HOME naming the cache."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "data" / split / f"{i}.png")
    env = dict(HF_HOME=str(hub_cache.parent), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    proc = run_cli("prior=ddpm", f"prior.path={MODEL_ID}", "dataset=image_folder", f"dataset.root={tmp_path / 'data'}",
                   "dataset.image_size=8", "dataset.channels=1", "m=20", "num_images=2", "batch_size=2",
                   "method.num_levels=5", "method.steps_per_level=1", "method.progress=false", "logger=none",
                   f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["prior"] == "ddpm" and metrics["num_images"] == 2
