"""Every operator config runs end to end, as `python run.py operator=NAME` does."""
import math

import pytest

from conftest import CONFIGS, TINY
from qcsbench.runner import run

pytestmark = pytest.mark.in_process

OPERATORS = sorted(p.stem for p in (CONFIGS / "operator").glob("*.yaml"))


def test_every_operator_config_is_tested():
    assert {"partial_circulant", "hadamard", "partial_fourier", "block"} <= set(OPERATORS)


@pytest.mark.parametrize("name", OPERATORS)
def test_operator_runs_end_to_end(make_cfg, tmp_path, name):
    cfg = make_cfg(*TINY, f"operator={name}", "num_images=2", "method.num_levels=5", f"+run_dir={tmp_path}")
    summary = run(cfg)
    assert summary["num_images"] == 2 and summary["num_diverged"] == 0
    assert math.isfinite(summary["psnr_mean"])
    assert (tmp_path / "metrics.json").is_file()
