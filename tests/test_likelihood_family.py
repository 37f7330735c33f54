"""The annealed-Langevin family by composition: a method config names its likelihood module, the
modules' settings are checked at construction, and the shared ladder rule."""
import math
from pathlib import Path

import pytest
import torch
import yaml

from qcsbench import likelihood
from qcsbench.channels import GaussianNoise, LogisticChannel, UniformQuantizer
from qcsbench.errors import ConfigError
from qcsbench.methods.annealed_langevin import AnnealedLangevin
from qcsbench.methods.dps import DPS
from qcsbench.operators import DenseOperator
from qcsbench.priors.base import overridden_ladder
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, ImageRandom
from qcsbench.settings import declared

pytestmark = pytest.mark.fast

METHODS = Path(__file__).resolve().parents[1] / "configs" / "method"


@pytest.mark.parametrize("method, score", [("qcs_sgm", "diagonal"), ("qcs_sgm_plus", "ep"), ("ald", "linear")])
def test_each_langevin_yaml_names_its_likelihood_and_builds(method, score):
    config = yaml.safe_load((METHODS / f"{method}.yaml").read_text())
    assert config["likelihood"] == score and score in likelihood.names()
    built = AnnealedLangevin(**{k: v for k, v in config.items() if k != "_target_"})
    assert built.describe()["name"] == method


def test_unknown_likelihood_and_foreign_knob_are_refused_at_construction():
    with pytest.raises(ConfigError, match=r"method.likelihood='probit' is not allowed: use one of diagonal, ep, linear"):
        AnnealedLangevin(likelihood="probit")
    with pytest.raises(ConfigError, match="method.ep_damping is not a setting of likelihood=diagonal"):
        AnnealedLangevin(likelihood="diagonal", ep_damping=0.1)
    keys = declared(AnnealedLangevin, "method", {"likelihood": "linear"}).keys
    assert "noise_std" in keys and "ep_damping" not in keys and "step_lr" in keys


def test_linear_score_matches_float64_autograd_of_the_gaussian_log_likelihood():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 8, generator=g, dtype=torch.float64)
    op = DenseOperator(a, (1, 2, 4))
    channel = UniformQuantizer(2, noise_std=0.1)
    x = torch.rand(3, 1, 2, 4, generator=g, dtype=torch.float64)
    problem = Problem(op, channel, channel.measure(op.forward(x), ImageRandom(0, range(3), MEASUREMENT)))
    y, sigma, beta = channel.dequantize(problem.measurement), 0.3, 0.7
    score = likelihood.load("linear").build(problem, noise_std=sigma)

    x = x.clone().requires_grad_(True)
    log_lik = -((y - x.flatten(1) @ a.T) ** 2).sum() / (2 * (sigma**2 + beta**2))
    (expected,) = torch.autograd.grad(log_lik, x)
    torch.testing.assert_close(score(x.detach(), beta), expected)


def test_half_line_bins_are_what_the_channel_says_not_its_bits():
    assert UniformQuantizer(1, noise_std=0.1).half_line_bins
    assert not UniformQuantizer(3, noise_std=0.1).half_line_bins
    assert not GaussianNoise(0.1).half_line_bins
    assert LogisticChannel(0.1).gaussian_form().half_line_bins


def test_overridden_ladder_keeps_the_own_ladder_or_is_geometric_between_the_ends():
    own = torch.tensor([8.0, 2.0, 0.5, 0.1], dtype=torch.float64)
    assert overridden_ladder(own) is own
    got = overridden_ladder(own, sigma_min=0.2, num_levels=3)
    expected = [8.0, math.sqrt(8.0 * 0.2), 0.2]  # geometric: the middle is the geometric mean of the ends
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("build", [lambda: AnnealedLangevin(sigma_max=0.1, sigma_min=0.5),
                                   lambda: DPS(num_levels=0), lambda: DPS(sigma_min=-1.0)])
def test_a_ladder_that_cannot_be_is_refused_before_any_prior(build):
    with pytest.raises(ConfigError, match=r"method\.(sigma_max|sigma_min|num_levels)=\S+ is not allowed"):
        build()
