"""Data terms, DPS guidance, the HQS data steps, and every method on a tiny MNIST problem."""
import json

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import TINY, run_cli
from qcsbench import metrics
from qcsbench.channels import LogisticChannel, Measurement, UniformQuantizer
from qcsbench.likelihood.data_term import nll, nll_grad
from qcsbench.samplers.hqs import gaussian_prox, gradient_prox, stable_step
from qcsbench.samplers.dps import guidance_grad
from qcsbench.methods.oneshot import OneShot
from qcsbench.operators import DenseOperator
from qcsbench.priors import GaussianMixturePrior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom
from qcsbench.runner import run
from qcsbench.setup import build

SHAPE = (1, 3, 4)


def small_problem(channel, m=15, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, 12, generator=g, dtype=torch.float64) / m**0.5
    op = DenseOperator(a, SHAPE)
    x = torch.rand(batch, *SHAPE, generator=g, dtype=torch.float64)
    meas = channel.measure(op.forward(x), ImageRandom(seed, range(batch), MEASUREMENT))
    return Problem(op, channel, meas), x, a


def autograd_of(fn, x):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return grad


@pytest.mark.fast
def test_probit_data_term_gradient_matches_float64_autograd():
    sigma = 0.05
    problem, _, a = small_problem(UniformQuantizer(1, noise_std=sigma))
    y = problem.measurement.y
    x = 2 * torch.rand(3, *SHAPE, dtype=torch.float64) - 0.5  # far from the truth: many violated signs
    probit = lambda v: -torch.special.log_ndtr(y * (v.reshape(3, -1) @ a.T) / sigma).sum(1)  # docs/math.md §6
    assert torch.allclose(nll(problem, x), probit(x), rtol=1e-10)
    assert torch.allclose(nll_grad(problem, x), autograd_of(probit, x), rtol=1e-8, atol=1e-10)


@pytest.mark.fast
@pytest.mark.parametrize("extra_var", [0.0, 0.3])
def test_logistic_data_term_gradient_matches_float64_autograd(extra_var):
    t = 0.1
    problem, _, a = small_problem(LogisticChannel(temperature=t))
    y = problem.measurement.y
    x = 2 * torch.rand(3, *SHAPE, dtype=torch.float64) - 0.5
    s = (t**2 + torch.pi / 8 * extra_var) ** 0.5  # MacKay's probit approximation of the convolution
    logistic = lambda v: torch.nn.functional.softplus(-y * (v.reshape(3, -1) @ a.T) / s).sum(1)
    assert torch.allclose(nll(problem, x, extra_var), logistic(x), rtol=1e-10)
    assert torch.allclose(nll_grad(problem, x, extra_var), autograd_of(logistic, x), rtol=1e-8, atol=1e-10)


@pytest.mark.fast
def test_logistic_channel_draws_with_the_sigmoid_probability_and_stays_finite():
    ch = LogisticChannel(temperature=0.5)
    z = torch.full((1, 20000), 0.4, dtype=torch.float64)
    meas = ch.measure(z, ImageRandom(0, [0], MEASUREMENT))
    assert float((meas.y == 1).double().mean()) == pytest.approx(float(torch.sigmoid(torch.tensor(0.8))), abs=0.01)
    assert torch.equal(meas.lower, torch.where(meas.y > 0, 0.0, -torch.inf).double())
    far = torch.tensor([[-1e4, 1e4]], dtype=torch.float64)
    m = Measurement(torch.ones(1, 2, dtype=torch.float64), far, far)
    assert torch.isfinite(ch.log_likelihood(m, far)).all() and torch.isfinite(ch.grad(m, far)).all()


def tiny_gmm():
    g = torch.Generator().manual_seed(1)
    means = torch.rand(2, 12, generator=g, dtype=torch.float64)
    b = torch.randn(2, 12, 12, generator=g, dtype=torch.float64) * 0.1
    covs = b @ b.transpose(1, 2) + 0.01 * torch.eye(12, dtype=torch.float64)
    return GaussianMixturePrior.from_covariances(torch.tensor([0.3, 0.7], dtype=torch.float64), means, covs, SHAPE,
                                                 torch.tensor([1.0, 0.1], dtype=torch.float64))


@pytest.mark.fast
@pytest.mark.parametrize("guidance", ["nll", "sqrt_nll"])
def test_dps_guidance_gradient_matches_finite_differences(guidance):
    problem, _, _ = small_problem(UniformQuantizer(1, noise_std=0.3), batch=2)
    prior, sigma = tiny_gmm(), 0.4
    x = torch.rand(2, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grad, _ = guidance_grad(problem, prior, x, sigma, guidance)

    def objective(v):
        value = nll(problem, prior.denoise(v, sigma))
        return value.sqrt() if guidance == "sqrt_nll" else value

    h, fd = 1e-6, torch.zeros_like(x)
    for i in range(12):
        e = torch.zeros(12, dtype=torch.float64)
        e[i] = h
        e = e.view(SHAPE)
        fd.view(2, -1)[:, i] = (objective(x + e) - objective(x - e)) / (2 * h)
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.fast
def test_gaussian_prox_is_the_exact_minimiser():
    problem, _, a = small_problem(UniformQuantizer(3, noise_std=0.1), m=8)
    y, s, rho = problem.channel.dequantize(problem.measurement), 0.1, 7.0
    x0 = torch.rand(3, *SHAPE, dtype=torch.float64)
    x = gaussian_prox(problem.operator, y, s)(x0, rho)
    grad = ((x.reshape(3, -1) @ a.T - y) @ a) / s**2 + rho * (x - x0).reshape(3, -1)
    assert grad.abs().max() < 1e-8


@pytest.mark.fast
def test_gradient_prox_lowers_the_hqs_objective():
    problem, _, _ = small_problem(UniformQuantizer(1, noise_std=0.05))
    x0, rho = torch.rand(3, *SHAPE, dtype=torch.float64), 2.0
    objective = lambda v: nll(problem, v) + rho / 2 * ((v - x0) ** 2).flatten(1).sum(1)
    x = gradient_prox(problem, steps=50, step_size=1e-3)(x0, rho)
    assert (objective(x) < objective(x0) - 1e-3).all()


@pytest.mark.fast
@pytest.mark.parametrize("channel", [UniformQuantizer(1, noise_std=0.1), UniformQuantizer(2, noise_std=0.1),
                                     UniformQuantizer(3, noise_std=0.1), LogisticChannel(temperature=0.1)])
def test_curvature_bound_is_the_sharpest_bend_of_the_log_likelihood(channel):
    """sup_z -d^2/dz^2 log p(y | z), by second differences of the log-likelihood along z, attained and never exceeded."""
    extra_var = 0.02
    problem, _, _ = small_problem(channel, m=15, batch=1)
    z = torch.linspace(-6, 6, 4001, dtype=torch.float64)[:, None].expand(-1, 15)
    meas = Measurement(*(t.expand(len(z), -1) for t in (problem.measurement.y, problem.measurement.lower,
                                                         problem.measurement.upper)))
    h = float(z[1, 0] - z[0, 0])
    ll = channel.log_likelihood(meas, z, extra_var)
    bend = -(ll[2:] - 2 * ll[1:-1] + ll[:-2]) / h**2
    bound = channel.curvature_bound(extra_var)
    assert float(bend.max()) <= bound * (1 + 1e-3) and float(bend.max()) >= 0.98 * bound


@pytest.mark.fast
def test_the_stable_step_keeps_a_multibit_data_step_bounded_and_three_times_it_does_not():
    """Diff-OneBit's data step at rho = 0 (its first levels) on 2-bit bins: at the bound the iterate
    settles; at three times it (what the fixed step 0.03 was on MNIST) it overshoots bin after bin."""
    problem, x, _ = small_problem(UniformQuantizer(2, noise_std=0.05), m=24)
    eta = stable_step(problem)
    assert eta == pytest.approx(2 * 0.05**2 / float(torch.linalg.eigvalsh(problem.operator.matrix() @ problem.operator.matrix().T).max()))
    start = torch.zeros_like(x)
    settled = gradient_prox(problem, steps=300, step_size=eta)(start, 0.0)
    assert torch.isfinite(settled).all() and float(nll(problem, settled).max()) < float(nll(problem, start).min())
    with torch.no_grad():
        wild = gradient_prox(problem, steps=300, step_size=3 * eta)(start, 0.0)
    assert not torch.isfinite(wild).all() or float(wild.abs().max()) > 1e3 * float(settled.abs().max())


@pytest.mark.fast
def test_a_noiseless_quantizer_needs_a_surrogate():
    from qcsbench.errors import ConfigError

    problem, _, _ = small_problem(UniformQuantizer(2, noise_std=0.0))
    with pytest.raises(ConfigError, match="method.surrogate_std=null"):
        stable_step(problem)


# --- every method on tiny MNIST with the GMM prior --------------------------------

FAST = {
    "diff_onebit": dict(num_levels=30), "diffpir": dict(num_levels=30), "dps": dict(num_levels=30),
    "ald": dict(num_levels=30, steps_per_level=2), "biht": {}, "oneshot": {}, "qcs_sgm": dict(num_levels=30, steps_per_level=2),
}


@pytest.fixture(scope="module")
def mnist(cache_dir):
    from hydra import compose, initialize_config_dir

    from conftest import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=TINY + ["m=300"])
    setup = build(OmegaConf.merge(cfg, {"device": "cpu"}))
    indices = list(range(4))
    problem, x = setup.problem(indices)
    op, ch, prior = problem.operator, problem.channel, setup.prior
    # The floor: OneShot fed random signs (what a method that ignores y gets: about the prior mean).
    guess = torch.where(torch.rand(4, cfg.m, generator=torch.Generator().manual_seed(5)) < 0.5, 1.0, -1.0)
    random = Problem(op, ch, Measurement(guess, guess, guess))
    floor = OneShot().recover(random, prior, None).x_hat
    return dict(cfg=cfg, x=x, prior=prior, problem=problem, random=random, indices=indices,
                floor=float(metrics.psnr(floor, x).mean()))


def recover(mnist, name, problem=None):
    from hydra import compose, initialize_config_dir

    from conftest import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[f"method={name}"])
    method = instantiate(cfg.method, progress=False, **FAST[name])
    return method.recover(problem or mnist["problem"], mnist["prior"], ImageRandom(0, mnist["indices"], SAMPLER))


@pytest.mark.in_process
@pytest.mark.parametrize("name", ["diff_onebit", "diffpir", "dps", "ald", "oneshot"])
def test_each_method_beats_oneshot_from_a_random_guess(mnist, name):
    result = recover(mnist, name)
    assert torch.isfinite(result.x_hat).all() and result.nfe == (60 if name == "ald" else FAST[name].get("num_levels", 1))
    assert float(metrics.psnr(result.x_hat, mnist["x"]).mean()) > mnist["floor"] + 1.0


@pytest.mark.in_process
def test_biht_beats_itself_on_random_signs(mnist):
    result = recover(mnist, "biht")
    real = metrics.psnr_scaled(result.x_hat, mnist["x"]).mean()
    noise = metrics.psnr_scaled(recover(mnist, "biht", mnist["random"]).x_hat, mnist["x"]).mean()
    assert result.nfe == 0 and float(real) > float(noise) + 1.0


@pytest.mark.in_process
def test_diff_onebit_improves_on_its_initialisation(mnist):
    result = recover(mnist, "diff_onebit")
    first = metrics.psnr(result.info["first_estimate"], mnist["x"]).mean()
    assert float(metrics.psnr(result.x_hat, mnist["x"]).mean()) > float(first) + 1.0


@pytest.mark.e2e
def test_logistic_task_end_to_end(tmp_path, make_cfg, mnist):
    """run.py with quantizer=logistic: Diff-OneBit from the command line, QCS-SGM and QCS-SGM+ in process."""
    proc = run_cli(*TINY, "quantizer=logistic", "method=diff_onebit", "method.num_levels=30", "m=300",
                   f"hydra.run.dir={tmp_path / 'd1'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    d1 = json.loads((tmp_path / "d1" / "metrics.json").read_text())
    qcs = run(make_cfg(*TINY, "quantizer=logistic", "method.num_levels=20", "method.steps_per_level=2", "m=300",
                       f"+run_dir={tmp_path / 'q'}"))
    plus = run(make_cfg(*TINY, "quantizer=logistic", "method=qcs_sgm_plus", "method.num_levels=20",
                        "method.steps_per_level=2", "m=300", f"+run_dir={tmp_path / 'p'}"))
    for summary in (d1, qcs, plus):
        assert summary["num_diverged"] == 0 and summary["psnr_mean"] > mnist["floor"] + 1.0, summary
    assert d1["nfe"] == 30 and qcs["nfe"] == 40 and plus["nfe"] == 40


@pytest.mark.fast
def test_diff_onebit_surrogate_only_widens_the_likelihood():
    """The surrogate's width is max(surrogate_std, the channel's noise): the FFHQ table's sigma = 0.5
    runs on the channel's own probit instead of stopping."""
    from qcsbench.errors import ConfigError
    from qcsbench.methods.diff_onebit import DiffOneBit

    method = DiffOneBit(surrogate_std=0.2)
    assert method.extra_var(UniformQuantizer(1, noise_std=0.05)) == pytest.approx(0.2**2 - 0.05**2)
    assert method.extra_var(UniformQuantizer(1, noise_std=0.5)) == 0.0
    assert DiffOneBit(surrogate_std=None).extra_var(UniformQuantizer(1, noise_std=0.05)) == 0.0
    with pytest.raises(ConfigError, match="surrogate_std=0"):
        DiffOneBit(surrogate_std=0.0)
