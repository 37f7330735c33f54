"""The Python API: a problem from images, a method called with a seed, a generator or our
streams, shape mismatches stopped with one sentence, and the example script run as a user would."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from qcsbench.channels import UniformQuantizer
from qcsbench.errors import ConfigError
from qcsbench.methods.diff_onebit import DiffOneBit
from qcsbench.methods.dps import DPS
from qcsbench.methods.annealed_langevin import AnnealedLangevin
from qcsbench.operators import gaussian
from qcsbench.priors import GaussianMixturePrior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom

SHAPE = (1, 3, 4)
METHODS = {
    "qcs_sgm": lambda: AnnealedLangevin(name="qcs_sgm", num_levels=4, steps_per_level=2, progress=False),
    "dps": lambda: DPS(num_levels=4, progress=False),
    "diff_onebit": lambda: DiffOneBit(num_levels=4, inner_steps=2, progress=False),
}


def tiny_prior(shape=SHAPE):
    n = shape[0] * shape[1] * shape[2]
    g = torch.Generator().manual_seed(1)
    means = torch.rand(2, n, generator=g, dtype=torch.float64)
    b = torch.randn(2, n, n, generator=g, dtype=torch.float64) * 0.1
    covs = b @ b.transpose(1, 2) + 0.01 * torch.eye(n, dtype=torch.float64)
    return GaussianMixturePrior.from_covariances(torch.tensor([0.3, 0.7], dtype=torch.float64), means, covs, shape,
                                                 torch.tensor([1.0, 0.3, 0.1], dtype=torch.float64))


def tiny_problem(shape=SHAPE, batch=3):
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
    return Problem.measure(x, gaussian(shape, 10, seed=0), UniformQuantizer(1, noise_std=0.1), rng=5), x


@pytest.mark.fast
def test_measuring_with_a_seed_is_measuring_with_the_runs_streams():
    problem, x = tiny_problem()
    channel = problem.channel
    expected = channel.measure(problem.operator.forward(x), ImageRandom(5, range(3), MEASUREMENT))
    assert torch.equal(problem.measurement.y, expected.y)


@pytest.mark.fast
@pytest.mark.parametrize("name", METHODS)
def test_a_method_takes_a_seed_a_generator_or_per_image_streams(name):
    problem, _ = tiny_problem()
    prior, method = tiny_prior().to("cpu", torch.float32), METHODS[name]()
    by_seed = method.recover(problem, prior, 7).x_hat
    by_streams = method.recover(problem, prior, ImageRandom(7, range(3), SAMPLER)).x_hat
    assert torch.equal(by_seed, by_streams)  # a seed is the run's per-image streams for images 0..B-1
    first = method.recover(problem, prior, torch.Generator().manual_seed(1)).x_hat
    again = method.recover(problem, prior, rng=torch.Generator().manual_seed(1)).x_hat
    other = method.recover(problem, prior, torch.Generator().manual_seed(2)).x_hat
    assert torch.isfinite(first).all() and torch.equal(first, again) and not torch.equal(first, other)
    fresh = [method.recover(problem, prior, None).x_hat for _ in range(2)]  # None: new noise every call
    assert torch.isfinite(fresh[0]).all() and not torch.equal(*fresh)


@pytest.mark.fast
def test_a_prior_for_other_images_stops_with_one_sentence():
    problem, _ = tiny_problem(shape=(1, 4, 4))
    with pytest.raises(ConfigError, match=r"^prior=\w+ takes images of shape \(1, 3, 4\), the problem's images have "
                                          r"shape \(1, 4, 4\): use a prior made for that image size"):
        AnnealedLangevin(num_levels=4).recover(problem, tiny_prior(), 0)


@pytest.mark.fast
def test_images_that_do_not_fit_the_operator_stop_with_one_sentence():
    with pytest.raises(ConfigError, match=r"the images have shape \(1, 4, 4\), the operator was built for \(1, 3, 4\)"):
        Problem.measure(torch.rand(2, 1, 4, 4), gaussian(SHAPE, 5), UniformQuantizer(1, noise_std=0.1))


@pytest.mark.fast
@pytest.mark.parametrize("rng, error", [(1.5, TypeError), (True, TypeError), (ImageRandom(0, range(2), 1), ValueError)])
def test_a_wrong_random_source_is_refused_with_one_sentence(rng, error):
    problem, _ = tiny_problem()
    with pytest.raises(error, match=r"^rng"):
        AnnealedLangevin(num_levels=4).recover(problem, tiny_prior(), rng)


@pytest.mark.e2e
def test_the_example_script_recovers_digits():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "recover.py"), "--num-images", "2",
                           "--num-levels", "20"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in proc.stdout.strip().splitlines() if ": " in line)
    assert lines["measurements"] == "(2, 200)"
    assert 10.0 < float(lines["psnr (dB)"].split()[0]) < 40.0
