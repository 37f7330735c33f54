"""Every method's defaults stay finite on the default experiment (MNIST, M = 200, sigma = 0.05,
Gaussian A, the Gaussian-mixture prior) at every bit depth, 16 bits included. Two digits and a
ladder shortened to 10 levels (its ends unchanged) keep it fast; the problem is built once per bit depth."""
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import CONFIGS, TINY
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom
from qcsbench.setup import build

pytestmark = pytest.mark.in_process

BITS = [1, 2, 3, 4, 8, 16]
METHODS = ["qcs_sgm", "qcs_sgm_plus", "diff_onebit", "dps", "diffpir", "ald", "biht", "oneshot"]
LANGEVIN = dict(num_levels=10, steps_per_level=2)
SHORT = {"qcs_sgm": LANGEVIN, "qcs_sgm_plus": LANGEVIN, "ald": LANGEVIN, "diff_onebit": dict(num_levels=10),
         "dps": dict(num_levels=10), "diffpir": dict(num_levels=10), "biht": {}, "oneshot": {}}
INDICES = [0, 1]


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=[o for o in TINY if not o.startswith("method.")] + list(overrides))


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
def test_defaults_give_finite_recoveries(setting, bits, method):
    recoverer = instantiate(compose_config(f"method={method}").method, progress=False, **SHORT[method])
    result = recoverer.recover(problem_at(setting, bits), setting["prior"], ImageRandom(0, INDICES, SAMPLER))
    assert result.x_hat.shape == setting["x"].shape and torch.isfinite(result.x_hat).all(), (method, bits)
