"""method=restoregrad (docs/math.md §11): the objective's terms against independent formulas, the
untrained model against the prior's denoiser, sampling from the learned prior, training, the
ablations' switches and the shipped-weights recovery path."""
from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.distributions import Normal, kl_divergence

from qcsbench import metrics
from qcsbench.channels.quantizer import UniformQuantizer
from qcsbench.errors import ConfigError
from qcsbench.formats import learned_file
from qcsbench.methods.restoregrad import RestoreGrad, learner
from qcsbench.networks.restoregrad import gaussian_kl, handmade_spread, restoregrad_terms
from qcsbench.networks.score_unet import denoise_centered
from qcsbench.operators.dense import gaussian
from qcsbench.priors.trained import trained_prior
from qcsbench.problem import Problem
from qcsbench.setup import build
from qcsbench.training.learner import train
from tests.conftest import CONFIGS, run_and_read
from tests.prior_files import trained_file


@pytest.mark.fast
def test_kl_term_is_the_kl_of_two_zero_mean_normals():
    g = torch.Generator().manual_seed(0)
    s_q, s_p = 0.1 + torch.rand(3, 5, generator=g, dtype=torch.float64), 0.1 + torch.rand(3, 5, generator=g,
                                                                                            dtype=torch.float64)
    want = kl_divergence(Normal(torch.zeros_like(s_q), s_q), Normal(torch.zeros_like(s_p), s_p))
    assert torch.allclose(gaussian_kl(s_q, s_p), want)


@pytest.mark.fast
def test_diffusion_and_collapse_terms_against_the_gaussian_log_density():
    """The diffusion term is -2 log N(err; 0, c_out^2) - log(2 pi c_out^2) per pixel, c_out the EDM
    output scale at the image's sigma; the collapse term is ||x0||^2 in the metric of s_q^2,
    -2 log N(x0; 0, s_q^2) - log(2 pi s_q^2)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 1, 3, 3, generator=g, dtype=torch.float64) * 2 - 1
    d = x0 + 0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    s_q = 0.2 + torch.rand(x0.shape, generator=g, dtype=torch.float64)
    s_p = 0.2 + torch.rand(x0.shape, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.3, 4.0], dtype=torch.float64)
    sd = 0.5
    terms = restoregrad_terms(x0, d, s_q, s_p, sigma, sd)

    def squared_distance(value, scale):
        return -2 * Normal(torch.zeros_like(value), scale).log_prob(value) - torch.log(2 * math.pi * scale**2)

    for i in range(2):
        c_out = sigma[i] * sd / math.sqrt(float(sigma[i]) ** 2 + sd**2) * torch.ones(9, dtype=torch.float64)
        err = (d[i] - x0[i]).flatten()
        assert torch.allclose(terms["diffusion"][i], squared_distance(err, c_out).mean())
        assert torch.allclose(terms["collapse"][i], squared_distance(x0[i].flatten(), s_q[i].flatten()).mean())
        assert torch.allclose(terms["kl"][i], gaussian_kl(s_q[i], s_p[i]).mean())


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "prior.pt"
    trained_file(path)
    prior = trained_prior(path)
    x = torch.rand(3, 1, 28, 28)
    problem = Problem.measure(x, gaussian((1, 28, 28), 60, seed=0), UniformQuantizer(1, 0.05), 0)
    return prior, problem, x


@pytest.mark.fast
def test_untrained_model_with_unit_spread_is_the_prior_denoiser(tiny):
    prior, problem, _ = tiny
    for kind in ("learned", "identity"):
        net = learner(prior, prior_kind=kind)
        x = torch.randn(3, 1, 28, 28)
        sigma = torch.tensor([0.05, 1.0, 30.0])
        c = net.condition(problem)
        spread = net.prior_spread(c)
        assert torch.allclose(spread, torch.ones_like(spread), atol=1e-6)
        with torch.no_grad():
            got = net.denoise(x, sigma, spread, c)
            want = denoise_centered(prior.net, x, sigma)
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.fast
def test_zero_sampling_steps_return_the_prior_draw_at_its_scale(tiny):
    prior, problem, _ = tiny
    net = learner(prior, prior_kind="handmade", sigma_max=10.0)
    big = Problem(problem.operator, problem.channel, problem.measurement.select([0] * 400))
    with torch.no_grad():
        draw = net(big, steps=0, rng=3)
        spread = net.prior_spread(net.condition(big))
    # per pixel, the 400 draws of one measurement have standard deviation 2 sigma_max s_p ([-1, 1] scale)
    ratio = draw.std(0) / (2 * 10.0 * spread[0])
    assert abs(float(ratio.mean()) - 1) < 0.03 and float(draw.mean(0).abs().max() / (2 * 10 * spread.max())) < 0.3


@pytest.mark.fast
def test_handmade_spread_follows_the_local_energy():
    v = torch.zeros(1, 1, 8, 8)
    v[..., 2:4, 2:4] = 3.0
    s = handmade_spread(v, 0.1, 2.0)
    assert float(s[0, 0, 2, 2]) > 1.5 and float(s[0, 0, 7, 7]) == pytest.approx(0.1)


@pytest.mark.fast
def test_bad_settings_stop_with_one_sentence(tiny):
    prior, _, _ = tiny
    with pytest.raises(ConfigError, match="learner.prior_kind=gauss"):
        learner(prior, prior_kind="gauss")
    with pytest.raises(ConfigError, match="learner.spread_max=0.5 is not allowed: use a finite number > 1"):
        learner(prior, spread_max=0.5)


def train_cfg(tmp_path, prior_path, *overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[
            "learner=restoregrad", "prior=trained", f"prior.checkpoint={prior_path}", f"out_dir={tmp_path / 'train'}",
            "batch_size=8", "eval_images=4", "eval_every=20", "save_every=20", "log_every=5", "m=60",
            "learner.sampling_steps=3", *overrides])


@pytest.mark.in_process
def test_training_lowers_the_loss_and_the_model_file_samples(tmp_path):
    prior_path = tmp_path / "prior.pt"
    trained_file(prior_path)
    cfg = train_cfg(tmp_path, prior_path, "max_steps=20", "lr=2e-3", "warmup_steps=1")
    # the objective on fixed pairs and fixed noise, before and after training
    problem = Problem.measure(torch.rand(8, 1, 28, 28), gaussian((1, 28, 28), 60, seed=0), UniformQuantizer(1, 0.05), 5)
    x = problem.back_projection().clamp(0, 1)  # any fixed images: the same for both evaluations
    with torch.no_grad():
        before = learner(trained_prior(prior_path)).loss(problem, x, torch.Generator().manual_seed(0))
    train(cfg)
    state = learned_file.read(tmp_path / "train" / "model.pt")
    net = learned_file.load_network(state, "model")
    with torch.no_grad():
        after = net.loss(problem, x, torch.Generator().manual_seed(0))
    assert float(after) < float(before)
    method = RestoreGrad(checkpoint=tmp_path / "train" / "model.pt", steps=2, progress=False)
    result = method.recover(problem, None, rng=0)
    assert result.nfe == 2 and torch.isfinite(result.x_hat).all()
    assert torch.equal(method.recover(problem, None, rng=0).x_hat, result.x_hat)  # seeded: reproducible
    with pytest.raises(ConfigError, match="method.steps=0"):
        RestoreGrad(checkpoint=tmp_path / "train" / "model.pt", steps=0)


@pytest.mark.e2e
def test_run_py_with_the_shipped_model_beats_the_untrained_one(tmp_path, make_cfg):
    """The default experiment's 16 digits: the shipped model against the one it was trained from (zero
    injectors, unit spread: the prior's unconditional sampler), on the same measurements and seed."""
    summary, _, _ = run_and_read(tmp_path, "method=restoregrad", "num_images=16", "batch_size=16", "logger=none",
                                 "method.progress=false", f"results_dir={tmp_path / 'results'}")
    setup = build(make_cfg("method=restoregrad", "num_images=16"))
    problem, x = setup.problem(list(range(16)))
    with torch.no_grad():
        untrained = learner(trained_prior(shipped="ncsn_mnist"))(problem, rng=0)
    untrained_psnr = float(metrics.psnr(untrained.clamp(0, 1), x).mean())
    assert summary["nfe"] == 20 and summary["prior"] == "none"
    # about 17.5 dB shipped, 9 dB untrained (torch 2.13, CPU)
    assert untrained_psnr < 12 < 15.5 < summary["psnr_mean"]
