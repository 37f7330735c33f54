"""Every method's defaults recover on the default experiment (MNIST, M = 200, sigma = 0.05, Gaussian
A, the Gaussian-mixture prior of +debug=tiny) at every bit depth, 16 bits included: finite, and above a
PSNR floor per method. Two digits and a shortened ladder (its ends unchanged) keep it fast; the problem
is built once per bit depth."""
import functools

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import CONFIGS, TINY
from qcsbench import metrics
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom
from qcsbench.setup import build

pytestmark = pytest.mark.in_process

BITS = [1, 2, 3, 4, 8, 16]
METHODS = ["qcs_sgm", "qcs_sgm_plus", "diff_onebit", "dps", "diffpir", "ald", "biht", "oneshot", "sim_dmis", "pnp_dm"]
LANGEVIN = dict(num_levels=30, steps_per_level=2)
SHORT = {"qcs_sgm": LANGEVIN, "qcs_sgm_plus": dict(num_levels=10, steps_per_level=2), "ald": LANGEVIN,
         "diff_onebit": dict(num_levels=10), "dps": dict(num_levels=10), "diffpir": dict(num_levels=10),
         "biht": {}, "oneshot": {}, "sim_dmis": dict(inversion_steps=5, num_levels=10),
         "pnp_dm": dict(iterations=6, num_levels=10, langevin_steps=10)}
# Mean PSNR of the two digits, dB: about 1.5 below the lowest of the six bit depths (measured, in
# brackets). An all-black guess scores 9.5 and uniform noise 4.9, so each floor but QCS-SGM+'s fails a
# recovery of zeros; QCS-SGM+ gets 10 levels only (its EP sweeps at 16 bits cost the most) and is
# not past black there yet, so its floor fails noise and a diverged chain.
FLOOR = {"qcs_sgm": 12.0,  # [13.2 at 1 bit, 16.7 at 4]
         "qcs_sgm_plus": 7.5,  # [8.9 at 1 bit, 10.6 at 2 to 4]
         "diff_onebit": 12.5,  # [14.0 at 1 bit, 18.8 at 4]
         "dps": 12.0,  # [13.5 at 1 bit, 18.3 at 16]
         "diffpir": 14.5,  # [15.9 at 1 bit, 17.3 at 8]
         "ald": 10.5,  # [11.7 at 1 bit, 12.6 at 4 to 16]
         "biht": 9.9,  # [10.4 at every bit depth: it reads only the signs]
         "oneshot": 16.0,  # [17.7 at 1 bit, 19.0 at 8]
         "sim_dmis": 15.2,  # [16.8 at 1 bit, 17.6 at 4 to 16]
         "pnp_dm": 10.6}  # [12.1 at 1 bit, 17.8 at 8; one posterior draw, below the point estimates]
INDICES = [0, 1]


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=[*TINY, *overrides])


@functools.cache
def method_config(method):
    """Composed once per method (twelve cases each); a case instantiates its own method from it."""
    return compose_config(f"method={method}").method


@pytest.fixture(scope="module")
def setting(cache_dir):
    setup = build(compose_config("device=cpu"))
    x = setup.test_set.batch(INDICES)
    operator = setup.operator
    return dict(x=x, operator=operator, z=operator.forward(x), prior=setup.prior, problems={})


def problem_at(setting, bits):
    if bits not in setting["problems"]:
        channel = instantiate(compose_config(f"bits={bits}").quantizer)
        meas = channel.measure(setting["z"], ImageRandom(0, INDICES, MEASUREMENT))
        setting["problems"][bits] = Problem(setting["operator"], channel, meas)
    return setting["problems"][bits]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bits", BITS)
def test_defaults_recover_above_a_floor(setting, bits, method):
    recoverer = instantiate(method_config(method), progress=False, **SHORT[method])
    result = recoverer.recover(problem_at(setting, bits), setting["prior"], ImageRandom(0, INDICES, SAMPLER))
    assert result.x_hat.shape == setting["x"].shape and torch.isfinite(result.x_hat).all(), (method, bits)
    psnr = float(metrics.psnr(result.x_hat.clamp(0, 1), setting["x"]).mean())
    assert psnr > FLOOR[method], (method, bits, psnr)
