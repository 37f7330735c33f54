"""scripts/train_prior.py: trains, checkpoints, resumes, and writes a file prior=trained loads."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, SHORT, run_and_read

pytestmark = pytest.mark.e2e


def test_train_prior_writes_a_checkpoint_prior_trained_loads(tmp_path):
    out = tmp_path / "train"
    args = [sys.executable, str(ROOT / "scripts" / "train_prior.py"), f"out_dir={out}", "model.channels=[8,8]",
            "model.emb_dim=16", "batch_size=8", "max_steps=6", "log_every=3", "save_every=3", "threads=2"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 6 and "optimizer" in state and state["loss"] > 0
    proc = subprocess.run(args[:-4] + ["max_steps=9", "log_every=3", "save_every=3", "threads=2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "resumed from" in proc.stderr + proc.stdout
    assert torch.load(out / "prior.pt", weights_only=True)["step"] == 9
    summary, config, _ = run_and_read(tmp_path, "prior=trained", f"prior.checkpoint={out / 'prior.pt'}", *SHORT)
    assert "qcsbench.priors.trained.trained_prior" in config and summary["num_diverged"] == 0
