"""Diffusers priors named by a Hugging Face model id, read from a local cache that the test writes."""
import os
import subprocess
import sys

import huggingface_hub.constants
import pytest
import torch

from conftest import ROOT
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


def test_a_cached_model_id_loads_the_same_model_as_its_folder(offline_cache):
    by_id = ddpm_prior(path=MODEL_ID)
    by_folder = ddpm_prior(path=offline_cache / f"models--test-org--tiny-ddpm" / "snapshots" / REVISION)
    assert by_id.shape == (1, 8, 8)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(by_id.score(x, 0.5), by_folder.score(x, 0.5))


def test_a_model_id_not_in_the_cache_stops_with_one_sentence(offline_cache):
    with pytest.raises(ConfigError, match=r"^prior.path=google/ddpm-cifar10-32 is neither a folder nor a model in "
                                          r"the local Hugging Face cache \(.*hub\): fetch it once"):
        ddpm_prior(path="google/ddpm-cifar10-32")


def test_hf_home_points_a_fresh_process_at_the_cache(hub_cache):
    """The way a user sets it: HF_HOME (its hub/ folder is the cache), no network."""
    env = dict(os.environ, HF_HOME=str(hub_cache.parent), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("HF_HUB_CACHE", None)
    code = f"from qcsbench.priors.diffusers_models import ddpm_prior; print(ddpm_prior(path='{MODEL_ID}').shape)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("(1, 8, 8)")
