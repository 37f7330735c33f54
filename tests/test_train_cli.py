"""scripts/train.py from the command line, as a user runs it: one line for a bad value, a local
grid with -m whose model the runner builds and runs, and a grid on the local SLURM cluster."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from qcsbench.setup import build
from tests.conftest import ROOT, THREADS
from tests.prior_files import trained_file
from tests.test_sweeps import require_slurm

pytestmark = pytest.mark.e2e


TINY = ["prior=trained", "max_steps=2", "eval_images=4", "batch_size=4", "eval_every=1", "m=60", "logger=none"]


def train_cli(*args):
    env = dict(os.environ, **THREADS)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def prior_file(tmp_path):
    path = tmp_path / "prior.pt"
    trained_file(path)
    return path


def test_a_bad_value_is_one_line_and_exit_status_2(tmp_path, prior_file):
    proc = train_cli(*TINY, f"prior.checkpoint={prior_file}", "learner.consistency=exact",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: learner.consistency=exact is not allowed: use one of quantized, linear."]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_local_grid_trains_one_model_per_job_and_the_runner_uses_it(tmp_path, prior_file, make_cfg):
    sweep = tmp_path / "sweep"
    proc = train_cli("-m", *TINY, f"prior.checkpoint={prior_file}", "learner.steps=1,2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, steps in (("0", 1), ("1", 2)):
        history = json.loads((sweep / job / "history.json").read_text())
        assert [h["step"] for h in history] == [0, 1, 2]
        assert (sweep / job / "model.pt").is_file() and (sweep / job / "train.log").is_file()
    # the model as run.py builds and runs it (the command-line path of method=idm is test_idm's end-to-end test)
    setup = build(make_cfg("method=idm", f"method.checkpoint={sweep / '1' / 'model.pt'}", "m=60", "num_images=2"))
    problem, _ = setup.problem([0, 1])
    result = setup.method.recover(problem, None)
    assert result.nfe == 2 and torch.isfinite(result.x_hat).all()
    described = setup.describe()
    assert described["prior"]["name"] == "none" and described["method"]["weights"]


def test_a_grid_on_slurm_trains_each_job_on_the_cluster(tmp_path, prior_file):
    require_slurm()
    sweep = tmp_path / "sweep"
    proc = train_cli("-m", *TINY, f"prior.checkpoint={prior_file}", "learner.steps=1,2", f"hydra.sweep.dir={sweep}",
                     "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
                     "hydra.launcher.timeout_min=20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all((sweep / job / "model.pt").is_file() for job in ("0", "1"))
    assert len(list((sweep / ".submitit").rglob("*_log.out"))) == 2  # two SLURM array tasks trained them
