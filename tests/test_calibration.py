"""The exact-posterior yardstick itself: a method that samples the posterior passes it, the same
method with a deliberately broken likelihood score fails it, and the calibration script runs."""
import math
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from qcsbench.calibration import Setting, evaluate, exact_samples, figures, make_instance, markdown_table
from qcsbench.methods.annealed_langevin import AnnealedLangevin
from qcsbench.setup import instantiate

SAMPLES, EXACT = 300, 3000
# Orthogonal A (M = N, kappa = 1) and no quantization: QCS-SGM's likelihood score A^T (y - A x) / (s^2 + beta^2)
# is then the exact score of the Gaussian likelihood at the last level, and its annealed Langevin samples
# the posterior up to the small blur of the last level beta_L = 0.01 against posterior widths of about 0.05.
SETTING = Setting(n=4, m=4, bits=0, operator="ill_conditioned", kappa=1.0, noise_std=0.1)


class SignFlipped(AnnealedLangevin):
    """A likelihood score with the wrong sign: it pushes away from the data."""

    def likelihood_score(self, problem):
        score = super().likelihood_score(problem)
        return lambda x, beta: -score(x, beta)


class MissingJacobian(AnnealedLangevin):
    """d/dz log p(y | z) handed back as if it were d/dx, without the chain rule's A^T (M = N here)."""

    def likelihood_score(self, problem):
        score = super().likelihood_score(problem)
        return lambda x, beta: problem.operator.forward(score(x, beta)).view_as(x)


@pytest.fixture(scope="module")
def reference():
    instances = [make_instance(SETTING, r) for r in range(2)]
    return instances, [exact_samples(inst, EXACT, sweeps=0)[0] for inst in instances]


def passes(rows) -> bool:
    """Tolerances from Monte Carlo error alone. A sampler of the posterior with n draws has a sample
    mean whose error, against the exact mean from n_e draws, has E ||.||^2 = tr Cov (1/n + 1/n_e):
    the relative mean error is about sqrt(1/n + 1/n_e); we allow three times that. Its trace of
    covariance has a relative standard deviation of at most sqrt(2/n) (sqrt(2/n_e) for the exact
    draws), so the spread ratio sqrt(tr Cov' / tr Cov) deviates from 1 by about half of
    sqrt(2/n + 2/n_e); we allow four times that. A sampler of the posterior never diverges."""
    mean_tol = 3 * math.sqrt(1 / SAMPLES + 1 / EXACT)
    spread_tol = 4 * 0.5 * math.sqrt(2 / SAMPLES + 2 / EXACT)
    return all(r["diverged"] == 0 and r["mean_error"] <= mean_tol and abs(r["spread"] - 1) <= spread_tol
               for r in rows)


def qcs_sgm(make_cfg, cls=AnnealedLangevin):
    """QCS-SGM with its configs/method/qcs_sgm.yaml values, as run.py builds it."""
    cfg = make_cfg("method=qcs_sgm", "method.progress=false").method
    return instantiate(cfg, _target_=f"{cls.__module__}.{cls.__qualname__}")


@pytest.mark.in_process
def test_qcs_sgm_with_an_exact_likelihood_score_passes_the_yardstick(reference, make_cfg):
    rows = evaluate(qcs_sgm(make_cfg), *reference, SAMPLES)
    assert passes(rows), markdown_table(rows)


@pytest.mark.in_process
@pytest.mark.parametrize("broken", [SignFlipped, MissingJacobian])
def test_a_broken_likelihood_score_fails_the_yardstick(reference, make_cfg, broken):
    rows = evaluate(qcs_sgm(make_cfg, broken), *reference, SAMPLES)
    assert not passes(rows), markdown_table(rows)


@pytest.mark.fast
def test_figures_of_draws_from_the_right_gaussian_a_point_estimate_and_diverged_samples():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)  # tr Cov = 14
    exact = torch.randn(4000, 3, generator=g, dtype=torch.float64) * scale
    samples = torch.randn(400, 3, generator=g, dtype=torch.float64) * scale
    samples[:40, 1] = float("nan")
    f = figures(samples, exact, torch.zeros(3, dtype=torch.float64))
    assert f["diverged"] == pytest.approx(0.1)
    assert f["mean_error"] < 3 * math.sqrt(1 / 360 + 1 / 4000) and abs(f["spread"] - 1) < 0.15
    point = figures(torch.ones(5, 3, dtype=torch.float64), exact, torch.zeros(3, dtype=torch.float64))
    assert point["mean_error"] == pytest.approx(math.sqrt(3 / 14), rel=0.05)
    assert (point["spread"], point["z2"], point["coverage"], point["mse"]) == (0.0, None, None, 1.0)


@pytest.mark.e2e
def test_calibration_script_prints_a_finite_table_per_method():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "calibrate.py"), "--methods", "qcs_sgm", "oneshot",
                           "--problems", "2x2", "--bits", "1", "--operators", "gaussian", "--replicates", "1",
                           "--samples", "20", "--exact", "200", "--sweeps", "10"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "### qcs_sgm" in proc.stdout and "### oneshot" in proc.stdout
    assert "nan" not in proc.stdout.lower()
