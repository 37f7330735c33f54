import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from qcsbench import resolvers

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
resolvers.register()  # as the command line does before it composes a config

# The tests' experiment is the tiny run users call (configs/debug/tiny.yaml): four digits, a small
# mixture (fitted once per session, see cache_dir), a 100-level ladder, no W&B; the rest is the default.
TINY = ["+debug=tiny"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One prior cache for the whole session, so each tiny mixture is fitted once."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["QCSBENCH_CACHE"] = str(path)
    return path


@pytest.fixture
def make_cfg(cache_dir, tmp_path):
    """Compose the config as run.py would; finished results go to this test's own folder."""
    def make(*overrides):
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            return compose("config", overrides=[f"results_dir={tmp_path / 'results'}", *overrides])
    return make


def run_cli(*args, cwd=ROOT, env=None, timeout=600):
    """Run ``python run.py ARGS`` as a user would; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# A short ladder below sigma = 1 keeps random-weight networks finite; the rest is the default experiment.
SHORT = ["num_images=2", "batch_size=2", "m=100", "method.num_levels=8", "method.steps_per_level=1",
         "method.sigma_max=1.0", "method.progress=false", "logger=none"]
THREADS = {"OMP_NUM_THREADS": "2"}


def run_and_read(tmp_path, *args):
    out = tmp_path / "run"
    proc = run_cli(*args, f"hydra.run.dir={out}", env=THREADS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text()), (out / "config.yaml").read_text(), out


TIERS = ("fast", "in_process", "e2e")  # the markers of pyproject.toml


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """One tier per test, so that -m fast never picks a slow test: a test its module leaves
    unmarked runs in process; two tiers on one test is a mistake in the test file."""
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(tiers)}: "
                                    f"give it one of {', '.join(TIERS)}.")
        if not tiers:
            item.add_marker("in_process")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
