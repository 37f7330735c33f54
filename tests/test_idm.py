"""method=idm and the training path it shares (docs/math.md §10): the quantization-aware target
against quadrature, the pseudo-inverse step against a dense pinv, the untrained network against
a hand-written few-step sampler, training, the model file and the problem-mismatch rule."""
from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from qcsbench import metrics
from qcsbench.channels import Measurement
from qcsbench.channels.logistic import LogisticChannel
from qcsbench.channels.quantizer import GaussianNoise, UniformQuantizer
from qcsbench.errors import ConfigError
from qcsbench.formats import learned_file
from qcsbench.learned.consistency import pseudo_inverse_step, quantized_target
from qcsbench.methods.idm import IDM, learner
from qcsbench.back_projection import matched_back_projection
from qcsbench.networks.idm import IDMNet
from qcsbench.operators.dense import gaussian
from qcsbench.priors.trained import trained_prior
from qcsbench.problem import Problem
from qcsbench.randomness import as_stream
from qcsbench.setup import build, problem_record
from qcsbench.training.learner import train
from tests.conftest import CONFIGS, run_and_read
from tests.prior_files import trained_file


def quadrature_target(channel, meas, z_hat, var_z):
    """E[z | y] = int z N(z; z_hat, v) P(y | z) dz / int N(z; z_hat, v) P(y | z) dz on a grid, float64,
    with P(y | z) = Phi((u - z)/s) - Phi((l - z)/s): the bin probability under the channel's noise."""
    s = channel.gaussian_form().noise_std
    z_hat, lower, upper = z_hat.double(), meas.lower.double(), meas.upper.double()
    sd = math.sqrt(var_z)
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)
    z = z_hat[..., None] + sd * grid
    weight = torch.exp(-grid**2 / 2)
    p = torch.special.ndtr((upper[..., None] - z) / s) - torch.special.ndtr((lower[..., None] - z) / s)
    return (z * weight * p).sum(-1) / (weight * p).sum(-1)


@pytest.mark.fast
@pytest.mark.parametrize("channel", [UniformQuantizer(1, 0.05), UniformQuantizer(3, 0.1), LogisticChannel(0.1)],
                         ids=["1bit", "3bit", "logistic"])
def test_quantized_target_is_the_posterior_mean_of_z_given_its_bin(channel):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 40, generator=g, dtype=torch.float64)
    meas = channel.measure(z, as_stream(1, 2))
    z_hat = z + 0.5 * torch.randn(z.shape, generator=g, dtype=torch.float64)
    got = quantized_target(channel, meas, z_hat, torch.tensor(0.3, dtype=torch.float64))
    want = quadrature_target(channel, meas, z_hat, 0.3)
    assert torch.allclose(got.double(), want, atol=1e-6, rtol=1e-6)


@pytest.mark.fast
def test_quantized_target_without_quantization_is_the_gaussian_update():
    channel = GaussianNoise(0.2)
    z_hat = torch.randn(3, 10, dtype=torch.float64)
    y = torch.randn(3, 10, dtype=torch.float64)
    meas = Measurement(y, y, y)
    got = quantized_target(channel, meas, z_hat, torch.tensor(0.5, dtype=torch.float64))
    assert torch.allclose(got, z_hat + 0.5 / (0.5 + 0.04) * (y - z_hat))


@pytest.mark.fast
def test_pseudo_inverse_step_is_the_dense_pinv_and_reaches_its_target():
    op = gaussian((1, 6, 6), 10, seed=3)
    x0 = torch.rand(2, 1, 6, 6)
    target = torch.randn(2, 10)
    got = pseudo_inverse_step(op, x0, target, torch.tensor(1.0))
    a = op.matrix().double()
    want = x0.double().reshape(2, -1) - (x0.double().reshape(2, -1) @ a.T - target.double()) @ torch.linalg.pinv(a).T
    assert torch.allclose(got.reshape(2, -1).double(), want, atol=1e-4)
    assert torch.allclose(op.forward(got).double(), target.double(), atol=1e-4)
    half = pseudo_inverse_step(op, x0, target, torch.tensor(0.5))
    assert torch.allclose(half, (x0 + got) / 2, atol=1e-5)


@pytest.fixture
def tiny(tmp_path):
    """A tiny random score UNet in the trained-prior format and a 1-bit problem on four digits."""
    path = tmp_path / "prior.pt"
    trained_file(path)
    prior = trained_prior(path)
    x = torch.rand(4, 1, 28, 28)
    problem = Problem.measure(x, gaussian((1, 28, 28), 60, seed=0), UniformQuantizer(1, 0.05), 0)
    return prior, problem, x


def plain_sampler(prior, problem, sigmas, spreads, gammas, pixel_rms=0.31):
    """The few-step sampler the untrained IDM network must equal, written from the formulas:
    x_T = back-projection; d = prior.denoise; target by quadrature; dense pinv step; VE DDIM move."""
    a = problem.operator.matrix().double()
    pinv = torch.linalg.pinv(a)
    x, _ = matched_back_projection(problem, problem.channel.dequantize(problem.measurement), pixel_rms)
    x = x.double()
    for t, sigma in enumerate(sigmas):
        d = prior.denoise(x.float(), sigma).double()
        eps = (x - d) / sigma
        flat = d.reshape(d.shape[0], -1)
        z_hat = flat @ a.T
        var_z = spreads[t] ** 2 * float(problem.operator.row_norms_sq.double().mean())
        target = quadrature_target(problem.channel, problem.measurement, z_hat, var_z)
        x0 = (flat - gammas[t] * (z_hat - target) @ pinv.T).view_as(d)
        following = sigmas[t + 1] if t + 1 < len(sigmas) else 0.0
        x = x0 + following * eps
    return x0


@pytest.mark.in_process
def test_untrained_network_is_the_plain_few_step_sampler(tiny):
    prior, problem, _ = tiny
    net = learner(prior, steps=3, sigma_start=1.0, sigma_end=0.05)
    with torch.no_grad():
        got = net(problem)
    sigmas = net.sigmas().tolist()
    spreads = [s / 2 for s in sigmas]
    want = plain_sampler(prior, problem, sigmas, spreads, [1.0, 1.0, 1.0])
    assert torch.allclose(got.double(), want, atol=2e-4)
    with torch.no_grad():  # the injectors are live once their output convolutions move off zero
        net.injectors[0][2].out.bias.fill_(0.1)
        assert not torch.allclose(net(problem), got, atol=1e-3)


@pytest.mark.fast
def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    prior, problem, x = tiny
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        net = learner(prior, steps=2, checkpointing=checkpointing)
        with torch.no_grad():
            for inj in net.injectors[0]:
                inj.out.weight.normal_(0, 0.01)
        net.loss(problem, x).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.fast
def test_frozen_unet_and_no_injection_train_only_what_they_say(tiny):
    prior, _, _ = tiny
    frozen = learner(prior, train_unet=False)
    assert not any(p.requires_grad for p in frozen.unet.parameters()) and frozen.log_sigmas.requires_grad
    assert learner(prior, inject=False).injectors is None


@pytest.mark.fast
def test_bad_learner_settings_stop_with_one_sentence(tiny):
    prior, _, _ = tiny
    with pytest.raises(ConfigError, match="learner.consistency=exact"):
        learner(prior, consistency="exact")
    with pytest.raises(ConfigError, match="sigma_start >= sigma_end"):
        learner(prior, sigma_start=0.01, sigma_end=0.1)


def train_cfg(tmp_path, prior_path, *overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[
            "prior=trained", f"prior.checkpoint={prior_path}", f"out_dir={tmp_path / 'train'}", "batch_size=4",
            "eval_images=4", "eval_every=3", "save_every=3", "log_every=1", "m=60", "learner.steps=2",
            f"cache_dir={tmp_path / 'cache'}", *overrides])


@pytest.mark.in_process
def test_training_lowers_the_loss_writes_a_model_and_resumes(tmp_path):
    prior_path = tmp_path / "prior.pt"
    trained_file(prior_path)
    first = train(train_cfg(tmp_path, prior_path, "max_steps=6", "lr=3e-3", "warmup_steps=1"))
    out = tmp_path / "train"
    state = learned_file.read(out / "model.pt")
    assert state["step"] == 6 and "optimizer" not in state
    history = state["train_config"]["history"]
    assert [h["step"] for h in history] == [0, 3, 6]
    assert history[-1]["eval_psnr"] > history[0]["eval_psnr"]
    assert first["eval_psnr"] == history[-1]["eval_psnr"]
    assert state["problem"]["operator"]["m"] == 60 and state["problem"]["quantizer"]["bits"] == 1
    assert len(list((tmp_path / "cache").glob("gram-eig-*.pt"))) == 1  # A A^T's eigendecomposition, kept for later runs
    # resume: the checkpoint's step, Adam state and history carry on
    more = train(train_cfg(tmp_path, prior_path, "max_steps=9", "lr=3e-3", "warmup_steps=1"))
    state = learned_file.read(out / "checkpoint.pt")
    assert state["step"] == 9 and [h["step"] for h in state["train_config"]["history"]] == [0, 3, 6, 9]
    assert more["step"] == 9
    # a changed learner in the same folder is refused, not silently mixed
    with pytest.raises(ConfigError, match="another learner or problem"):
        train(train_cfg(tmp_path, prior_path, "max_steps=12", "learner.steps=3"))


@pytest.mark.in_process
def test_training_rejects_bad_values_before_any_compute(tmp_path):
    with pytest.raises(ConfigError, match="lr=-1"):
        train(train_cfg(tmp_path, tmp_path / "missing.pt", "lr=-1"))
    prior_path = tmp_path / "prior.pt"
    trained_file(prior_path)
    with pytest.raises(ConfigError, match="learner.stepz is not a setting of learner=idm: use one of checkpointing"):
        train(train_cfg(tmp_path, prior_path, "+learner.stepz=2"))
    with pytest.raises(ConfigError, match="eval_images=5000 is not allowed with 4000 training images"):
        train(train_cfg(tmp_path, prior_path, "eval_images=5000"))
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        gmm = compose("train", overrides=["prior=gmm", f"out_dir={tmp_path / 'train'}"])
    with pytest.raises(ConfigError, match="prior=gmm cannot start a learner"):
        train(gmm)
    assert not (tmp_path / "train" / "checkpoint.pt").exists()


@pytest.fixture
def model_file(tmp_path):
    """A model.pt for m=60 from two training steps on the tiny prior."""
    prior_path = tmp_path / "prior.pt"
    trained_file(prior_path)
    train(train_cfg(tmp_path, prior_path, "max_steps=2"))
    return tmp_path / "train" / "model.pt"


@pytest.mark.in_process
def test_model_file_round_trip_recovers_as_the_trained_network(model_file):
    method = IDM(checkpoint=model_file, progress=False)
    state = learned_file.read(model_file)
    net = IDMNet.rebuild(state["spec"])
    net.load_state_dict(state["ema"])
    problem = Problem.measure(torch.rand(2, 1, 28, 28), gaussian((1, 28, 28), 60, seed=0), UniformQuantizer(1, 0.05), 0)
    with torch.no_grad():
        want = net(problem).clamp(0, 1)
    result = method.recover(problem, None)
    assert torch.equal(result.x_hat, want) and result.nfe == 2


@pytest.mark.in_process
def test_a_model_on_another_problem_stops_naming_what_differs(model_file, make_cfg):
    common = ["method=idm", f"method.checkpoint={model_file}"]
    build(make_cfg(*common, "m=60"))  # the problem it was trained for
    with pytest.raises(ConfigError) as err:
        build(make_cfg(*common, "m=100", "bits=2"))
    message = str(err.value)
    assert "operator.m (trained 60, here 100)" in message and "quantizer.bits (trained 1, here 2)" in message
    assert "method.allow_mismatch=true" in message and "\n" not in message
    build(make_cfg(*common, "m=100", "method.allow_mismatch=true"))


@pytest.mark.in_process
def test_another_image_shape_stops_in_one_sentence_even_with_allow_mismatch(model_file):
    """allow_mismatch lets a model meet another operator or quantizer, but its network cannot take
    images of another shape: that stops at set-up (setup.build calls check_problem), not in the UNet."""
    from types import SimpleNamespace

    method = IDM(checkpoint=model_file, allow_mismatch=True, progress=False)
    shape = (3, 32, 32)
    record = problem_record(SimpleNamespace(name="cifar10", shape=shape), gaussian(shape, 60, seed=0),
                                         UniformQuantizer(1, 0.05))
    with pytest.raises(ConfigError) as err:
        method.check_problem(record)
    message = str(err.value)
    assert "(1, 28, 28)" in message and "(3, 32, 32)" in message and "\n" not in message


@pytest.mark.e2e
def test_run_py_with_the_shipped_model_beats_the_untrained_network(tmp_path, make_cfg):
    """The default experiment's 16 digits: the shipped weights against the network they were
    trained from (the plain 3-step sampler on ncsn_mnist), on the same measurements."""
    summary, _, _ = run_and_read(tmp_path, "method=idm", "num_images=16", "batch_size=16", "logger=none",
                                 "method.progress=false", f"results_dir={tmp_path / 'results'}")
    setup = build(make_cfg("method=idm", "num_images=16"))
    problem, x = setup.problem(list(range(16)))
    untrained = learner(trained_prior(shipped="ncsn_mnist"), steps=3)
    with torch.no_grad():
        untrained_psnr = float(metrics.psnr(untrained(problem).clamp(0, 1), x).mean())
    assert summary["nfe"] == 3 and summary["prior"] == "none"
    # 20.2 dB shipped, 17.3 dB untrained (torch 2.13, CPU): the floor sits between, a dB clear of each
    assert untrained_psnr + 1 < 18.5 < summary["psnr_mean"]
