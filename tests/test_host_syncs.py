"""A sampler step a GPU can run without waiting on the host: counted with qcsbench.opcount, on the
CPU, between the first and the last prior call of a short run (set-up before the loop is allowed
its reads); and the per-image noise that the loops draw."""
import pytest
import torch

from qcsbench.channels import GaussianNoise, UniformQuantizer
from qcsbench.likelihood.ep import EPLikelihoodScore
from qcsbench.methods.annealed_langevin import AnnealedLangevin
from qcsbench.methods.daps import DAPS
from qcsbench.methods.diff_onebit import DiffOneBit
from qcsbench.methods.diffpir import DiffPIR
from qcsbench.methods.dps import DPS
from qcsbench.methods.pnp_dm import PnPDM
from qcsbench.methods.red_diff import RedDiff
from qcsbench.methods.sim_dmis import SIMDMIS
from qcsbench.operators import gaussian, ill_conditioned
from qcsbench.opcount import OpCounter, PausedPrior
from qcsbench.priors import GaussianMixturePrior
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom

pytestmark = pytest.mark.fast

SHAPE = (1, 4, 4)
D, M, B = 16, 12, 3


class StepSyncs(PausedPrior):
    """Records the counter's syncs at every prior call."""

    def __init__(self, prior, counter):
        super().__init__(prior, counter)
        self.marks = []

    def _paused(self, fn, *args, **kwargs):
        self.marks.append(self.counter.syncs)
        return super()._paused(fn, *args, **kwargs)


@pytest.fixture(scope="module")
def setting():
    g = torch.Generator().manual_seed(0)
    prior = GaussianMixturePrior.from_covariances(torch.full((2,), 0.5), torch.rand(2, D, generator=g),
                                                  0.05 * torch.eye(D).repeat(2, 1, 1), SHAPE, [2.0, 0.5, 0.1])
    op = ill_conditioned(SHAPE, M, 0, 100.0)
    channel = UniformQuantizer(2, noise_std=0.05)
    x = torch.rand(B, *SHAPE, generator=g)
    problem = Problem(op, channel, channel.measure(op.forward(x), ImageRandom(0, range(B), MEASUREMENT)))
    return prior, problem


METHODS = {
    "qcs_sgm": lambda: AnnealedLangevin(likelihood="diagonal", steps_per_level=2, progress=True),
    "qcs_sgm_norm_ratio": lambda: AnnealedLangevin(likelihood="diagonal", steps_per_level=2, weighting="norm_ratio"),
    "ald": lambda: AnnealedLangevin(likelihood="linear", steps_per_level=2),
    "diffpir": lambda: DiffPIR(num_levels=4, noise_std=0.1),
    "dps": lambda: DPS(num_levels=4),
    "diff_onebit": lambda: DiffOneBit(num_levels=4, inner_steps=3),
    "pnp_dm": lambda: PnPDM(iterations=2, num_levels=4, langevin_steps=3),
    "daps": lambda: DAPS(num_levels=3, ode_steps=2, langevin_steps=3),
    "sim_dmis": lambda: SIMDMIS(inversion_steps=3, num_levels=4),
    "red_diff": lambda: RedDiff(num_levels=4),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_a_sampler_step_reads_nothing_back_from_the_device(setting, name):
    prior, problem = setting
    counter = OpCounter()
    spy = StepSyncs(prior, counter)
    with counter:
        METHODS[name]().recover(problem, spy, ImageRandom(0, range(B), SAMPLER))
    assert len(spy.marks) >= 3
    assert spy.marks[-1] - spy.marks[0] == 0, counter.sync_names


def test_ep_reads_the_device_once_per_call_and_old_looks_did_it_every_sweep(setting):
    """After its first call EP looks once per call (where the previous call's sweeps suffice), and
    when it looks never changes the score: another schedule of looks gives the same bits."""
    import qcsbench.likelihood.ep as ep

    _, problem = setting
    x = torch.rand(B, *SHAPE, generator=torch.Generator().manual_seed(1))
    score = EPLikelihoodScore(problem)
    first = score(x, 0.3)
    counter = OpCounter()
    with counter:
        for _ in range(4):
            again = score(x, 0.3)
    assert counter.syncs == 4 and score.iterations > 1
    assert torch.equal(first, again)
    old = (ep.FIRST_CHECK, ep.next_look)
    try:
        ep.FIRST_CHECK, ep.next_look = 1, lambda slowest: 1  # looks after sweeps 1, 2, 4, 8, ... of every call
        every_sweep = EPLikelihoodScore(problem)
        assert torch.equal(every_sweep(x, 0.3), first)
        assert torch.equal(every_sweep.stats()["ep_sweeps_max"], score.stats()["ep_sweeps_max"])
    finally:
        ep.FIRST_CHECK, ep.next_look = old


def test_ep_without_bins_needs_no_read(setting):
    _, problem = setting
    channel = GaussianNoise(0.1)
    plain = Problem(problem.operator, channel, channel.measure(problem.operator.forward(torch.rand(B, *SHAPE)),
                                                                ImageRandom(0, range(B), MEASUREMENT)))
    counter = OpCounter()
    score = EPLikelihoodScore(plain)
    with counter:
        score(torch.rand(B, *SHAPE), 0.3)
    assert counter.syncs == 0


def test_per_image_noise_does_not_depend_on_the_batch():
    """Image j's draws are those of its own generator, in any batch, in any order, for any dtype."""
    for dtype in (torch.float32, torch.float64):
        together = ImageRandom(3, [0, 1, 2, 5], SAMPLER)
        apart = ImageRandom(3, [5, 1], SAMPLER)
        alone = torch.Generator().manual_seed(0)
        from qcsbench.randomness import seed_for

        alone.manual_seed(seed_for(3, 5, SAMPLER))
        for draw in ("randn", "rand"):
            a, b = getattr(together, draw)(2, 7, dtype=dtype), getattr(apart, draw)(2, 7, dtype=dtype)
            own = getattr(torch, draw)((2, 7), generator=alone, dtype=dtype)
            assert a.dtype == dtype and a.shape == (4, 2, 7)
            assert torch.equal(a[3], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[3], own)
