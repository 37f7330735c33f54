"""Several samples per image (num_samples): their spread against numpy, their streams, their resume, whole runs."""
import csv
import json

import numpy as np
import pytest
import torch

from conftest import CONFIGS, TINY
from qcsbench import runner, spread
from qcsbench.errors import ConfigError
from qcsbench.methods.base import LearnedMethod
from qcsbench.randomness import SAMPLER, ImageRandom
from qcsbench.runner import run
from qcsbench.setup import build, method_names
from qcsbench.validate import check_config

# Two images, a ten-level ladder: a few seconds per in-process run.
SMALL = [*TINY, "num_images=2", "method.num_levels=10", "resume=false"]


@pytest.mark.fast
def test_the_spread_statistics_match_numpy_on_a_handcrafted_sample_set():
    """Five samples of a six-pixel image, written out by hand: std, 90 % interval, correlation by numpy."""
    samples = np.array([[0.10, 0.50, 0.90, 0.30, 0.00, 0.70],
                        [0.20, 0.50, 0.60, 0.35, 0.10, 0.70],
                        [0.40, 0.50, 0.80, 0.20, 0.05, 0.75],
                        [0.30, 0.50, 0.70, 0.25, 0.20, 0.65],
                        [0.00, 0.50, 0.95, 0.40, 0.15, 0.70]])
    truth = np.array([0.35, 0.50, 0.20, 0.41, 0.12, 0.70])
    std = samples.std(0, ddof=1)
    lo, hi = np.quantile(samples, [0.05, 0.95], axis=0)
    inside = (truth >= lo) & (truth <= hi)
    assert inside.tolist() == [True, True, False, False, True, True]  # the set exercises both outcomes
    error = np.abs(samples.mean(0) - truth)
    got = spread.statistics(torch.tensor(samples, dtype=torch.float32).view(5, 1, 2, 3),
                            torch.tensor(truth, dtype=torch.float32).view(1, 2, 3))
    assert got["posterior_std"] == pytest.approx(std.mean(), rel=1e-6)
    assert got["coverage"] == inside.mean() == 4 / 6
    assert got["std_error_corr"] == pytest.approx(np.corrcoef(std, error)[0, 1], rel=1e-5)
    for q in (0.05, 0.3, 0.95):
        assert np.allclose(spread.quantile(torch.tensor(samples), q).numpy(), np.quantile(samples, q, axis=0))
    same = spread.statistics(torch.ones(3, 1, 2, 2), torch.zeros(1, 2, 2))  # no spread: no correlation
    assert same == dict(posterior_std=0.0, coverage=0.0, std_error_corr=None)


@pytest.mark.fast
def test_a_sample_draws_the_same_noise_alone_or_beside_others():
    """Sample s of image i from (seed, i, SAMPLER, s); sample 0 is the stream a one-sample run has always used."""
    mixed = ImageRandom(7, [3, 3, 5, 3], SAMPLER, samples=[0, 1, 0, 2]).randn(4)
    alone = [ImageRandom(7, [i], SAMPLER, samples=[s]).randn(4)[0] for i, s in [(3, 0), (3, 1), (5, 0), (3, 2)]]
    assert torch.equal(mixed, torch.stack(alone))
    assert torch.equal(mixed[[0, 2]], ImageRandom(7, [3, 5], SAMPLER).randn(4))
    assert len({tuple(row.tolist()) for row in mixed}) == 4


@pytest.mark.in_process
def test_a_sample_does_not_depend_on_the_number_of_samples_or_the_batch(make_cfg, tmp_path):
    saved = {}
    for samples, batch in ((2, 2), (4, 1)):
        out = tmp_path / f"s{samples}"
        run(make_cfg(*SMALL, f"num_samples={samples}", f"batch_size={batch}", f"+run_dir={out}"))
        saved[samples] = torch.load(out / "recon.pt", weights_only=True)
    assert saved[4]["samples"].shape == (2, 4, 1, 28, 28)
    assert torch.allclose(saved[2]["samples"], saved[4]["samples"][:, :2], atol=1e-5)
    assert not torch.allclose(saved[4]["samples"][:, 0], saved[4]["samples"][:, 1], atol=1e-2)  # they differ
    one = tmp_path / "s1"
    run(make_cfg(*SMALL, "num_samples=1", f"+run_dir={one}"))
    assert torch.allclose(torch.load(one / "recon.pt", weights_only=True)["recon"], saved[4]["samples"][:, 0],
                          atol=1e-5)  # sample 0 is what a one-sample run gives


class Killed(Exception):
    """What stops the run in the middle (a killed job, Ctrl-C)."""


@pytest.mark.in_process
def test_an_interrupted_run_resumes_its_finished_samples(make_cfg, tmp_path, monkeypatch):
    """Two images, three samples, batches of two recoveries: killed in the third batch, the store holds
    the four finished samples, and the re-run computes only the other two."""
    args = [*SMALL, "num_samples=3", "batch_size=2", "resume=true", f"results_dir={tmp_path / 'results'}"]
    real, calls = runner.recover_batch, []

    def killed(setup, units):
        calls.append(list(units))
        if len(calls) == 3:
            raise Killed
        return real(setup, units)

    monkeypatch.setattr(runner, "recover_batch", killed)
    with pytest.raises(Killed):
        run(make_cfg(*args, f"+run_dir={tmp_path / 'a'}"))
    assert calls == [[(0, 0), (0, 1)], [(0, 2), (1, 0)], [(1, 1), (1, 2)]]
    (store,) = (tmp_path / "results").iterdir()
    assert sorted(p.name for p in (store / "images").iterdir()) == ["000000-1.pt", "000000-2.pt", "000000.pt",
                                                                     "000001.pt"]
    calls.clear()
    resumed = run(make_cfg(*args, f"+run_dir={tmp_path / 'b'}"))
    assert calls == [[(1, 1), (1, 2)]]
    assert resumed["num_resumed"] == 4 and resumed["num_computed"] == 2
    monkeypatch.setattr(runner, "recover_batch", real)
    fresh = run(make_cfg(*SMALL, "num_samples=3", "batch_size=2", f"+run_dir={tmp_path / 'c'}"))
    assert resumed["psnr_mean"] == fresh["psnr_mean"]  # the same batches: what an uninterrupted run gives
    assert torch.equal(torch.load(tmp_path / "b" / "recon.pt")["samples"], torch.load(tmp_path / "c" / "recon.pt")["samples"])


POINT = "num_samples=2 is not allowed for method={}, a point estimate (the same measurements always give the same " \
        "recovery): use num_samples=1."


@pytest.mark.in_process
@pytest.mark.parametrize("method", ["biht", "oneshot", "idm"])
def test_several_samples_of_a_point_estimate_are_refused_in_one_sentence(make_cfg, tmp_path, method):
    cfg = make_cfg(*TINY, f"method={method}", "num_samples=2", f"cache_dir={tmp_path / 'cache'}",
                   f"+run_dir={tmp_path / 'run'}")
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert str(err.value) == POINT.format(method)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()  # nothing was built


SHORT = dict(num_levels=5, steps=2, iterations=20)  # a method's ladder, sampling steps or iterations, cut


def shortened(make_cfg, method):
    """The tiny experiment with ``method``, made short where the method has one of the knobs of SHORT."""
    cfg = make_cfg(*TINY, f"method={method}", "num_images=1")
    return make_cfg(*TINY, f"method={method}", "num_images=1",
                    *(f"method.{key}={value}" for key, value in SHORT.items() if key in cfg.method))


@pytest.mark.in_process
@pytest.mark.parametrize("method", method_names(CONFIGS))
def test_a_method_is_a_point_estimate_exactly_when_two_streams_give_the_same_recovery(make_cfg, method):
    """The attribute that refuses num_samples > 1, checked against what the method does: one image's
    y recovered twice, with the streams of samples 0 and 1."""
    cfg = shortened(make_cfg, method)
    check_config(cfg)
    setup = build(cfg)
    problem, _ = setup.problem([0])
    problem = problem.select([0, 0])
    prior = None if isinstance(setup.method, LearnedMethod) else setup.prior
    x = setup.method.recover(problem, prior, ImageRandom(0, [0, 0], SAMPLER, samples=[0, 1])).x_hat
    assert torch.equal(x[0], x[1]) == setup.method.point_estimate


@pytest.mark.in_process
def test_a_tiny_run_with_three_samples_scores_their_mean_and_reports_their_spread(make_cfg, tmp_path):
    """+debug=tiny num_samples=3: the mean of the samples is the recovery scored; by Jensen its squared
    error is at most the samples' mean squared error, image by image."""
    summary = run(make_cfg(*TINY, "num_samples=3", f"+run_dir={tmp_path}"))
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for name in ["psnr", "psnr_single", "ssim_single", "posterior_std", "coverage", "std_error_corr"]:
        assert on_disk[f"{name}_mean"] is not None and f"{name}_std" in on_disk, name
    assert on_disk["num_samples"] == 3 and on_disk["num_samples_diverged"] == 0 and on_disk["num_computed"] == 12
    assert 0 < on_disk["coverage_mean"] <= 1 and on_disk["posterior_std_mean"] > 0
    rows = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    saved = torch.load(tmp_path / "recon.pt", weights_only=True)
    samples, truth = saved["samples"].double(), saved["truth"].double()
    assert samples.shape == (4, 3, 1, 28, 28) and torch.allclose(saved["recon"].double(), samples.mean(1), atol=1e-6)
    mse_of_mean = ((samples.mean(1) - truth) ** 2).flatten(1).mean(1)
    mean_mse = ((samples - truth[:, None]) ** 2).flatten(2).mean(2).mean(1)
    assert (mse_of_mean <= mean_mse).all()
    for row, mse in zip(rows, mse_of_mean):
        assert float(row["psnr"]) == pytest.approx(-10 * np.log10(float(mse)), abs=1e-4)  # the mean is what is scored
        assert int(row["samples_diverged"]) == 0 and 0 <= float(row["coverage"]) <= 1
    print(f"psnr of the mean of 3 samples {summary['psnr_mean']:.2f} dB, "
          f"mean psnr of one sample {summary['psnr_single_mean']:.2f} dB")
