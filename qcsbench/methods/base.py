"""The method interface: ``recover(problem, prior, rng) -> Recovery``."""
from __future__ import annotations

from qcsbench.errors import ConfigError
from qcsbench.formats import learned_file
from qcsbench.formats.checkpoints import checkpoint_file
from qcsbench.learned import WEIGHTS
from qcsbench.priors import Prior
from qcsbench.priors.base import overridden_ladder
from qcsbench.problem import Problem, Recovery
from qcsbench.randomness import as_stream
from qcsbench.samplers.counted import CountedPrior
from qcsbench.settings import boolean, settings, text


def check_prior_fits(prior, shape) -> None:
    """Stop before any compute when the prior was made for images of another shape than ``shape``
    (the set-up asks as soon as it has built the prior, a method before it recovers)."""
    own = getattr(prior, "shape", None)
    if own is not None and tuple(own) != tuple(shape):
        raise ConfigError(f"prior={prior.name} takes images of shape {tuple(own)}, the problem's images have shape "
                          f"{tuple(shape)}: use a prior made for that image size, or resize the images.")


# Grouped settings whose keys are already the method config's own (describe lists them as they are).
UNPREFIXED = ("ladder", "likelihood_knobs")


class Method:
    """A recovery algorithm. Subclasses write ``_recover(problem, prior, stream)``; users call
    ``recover``, which accepts any random source and checks that the prior fits the images."""

    needs_prior = True  # False for a learned method, which carries its own network: run.py then builds none
    # True where the same measurements always give the same recovery (no draw from rng): one sample per image
    point_estimate = False

    def recover(self, problem: Problem, prior: Prior, rng=0) -> Recovery:
        """rng: a seed, a torch.Generator or an ImageRandom (per-image streams, as run.py uses)."""
        check_prior_fits(prior, problem.shape)
        counted = None if prior is None else CountedPrior(prior)
        return self._recover(problem, counted, as_stream(rng, problem.batch_size, problem.measurement.y.device))

    def _recover(self, problem: Problem, prior: CountedPrior, rng) -> Recovery:
        """The recovery; its NFE is ``prior.nfe`` (a learned method, which has no prior, counts its own)."""
        raise NotImplementedError

    @classmethod
    def couples_batch(cls, settings: dict) -> bool:
        """Whether, with these settings (its config), an image's recovery depends on the rest of its batch
        (the store then keys results by the batch size and resumes whole batches)."""
        return False

    def describe(self) -> dict:
        """The name and every setting the method keeps (what it runs with, after its own
        defaults and conversions); grouped settings are flattened (ladder keys as they are,
        others prefixed, e.g. ep_max_iter)."""
        out = {"name": self.name}
        for attr, value in sorted(vars(self).items()):
            if attr in ("name", "progress") or attr.startswith("_"):
                continue
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for key, v in items:
                if v is None or isinstance(v, (bool, int, float, str)):
                    out[attr if key is None else key if attr in UNPREFIXED else f"{attr}_{key}"] = v
        return out


class Ladder(dict):
    """A method's noise ladder: the prior's own unless the method config sets sigma_max, sigma_min
    or num_levels (then geometric). The method declares them (``**LADDER``, checked before it is
    built); a dict so that ``describe`` lists the three keys as they are."""

    def __init__(self, sigma_max=None, sigma_min=None, num_levels=None):
        super().__init__(sigma_max=sigma_max, sigma_min=sigma_min, num_levels=num_levels)

    def sigmas(self, prior: Prior):
        if all(v is None for v in self.values()):
            return prior.sigmas
        # the ends the prior fills in can still cross the ones the config gives
        hi = float(prior.sigmas[0]) if self["sigma_max"] is None else self["sigma_max"]
        lo = float(prior.sigmas[-1]) if self["sigma_min"] is None else self["sigma_min"]
        if not hi > lo:
            levels = len(prior.sigmas) if self["num_levels"] is None else self["num_levels"]
            raise ConfigError(f"method ladder sigma_max={hi}, sigma_min={lo}, num_levels={levels} "
                              "is not allowed: use sigma_max > sigma_min > 0 and num_levels >= 1.")
        return overridden_ladder(prior.sigmas, **self)


@settings("method", checkpoint=checkpoint_file(null=True), shipped=text(), allow_mismatch=boolean(), progress=boolean())
class LearnedMethod(Method):
    """A method whose network scripts/train.py trained (docs/architecture.md §5). It carries its
    own network, so no prior is built; the model file names the problem it was trained for, and
    ``check_problem`` (called by setup.build, before any compute) refuses another one unless
    ``allow_mismatch``. ``checkpoint`` null takes qcsbench/learned/weights/<shipped>.pt. ``learner``:
    the learner (learned_file.LEARNERS) whose model files the method reads; another one is refused."""

    needs_prior = False
    learner: str

    def __init__(self, name, checkpoint, shipped, allow_mismatch, progress):
        self.name, self.allow_mismatch, self.progress = name, bool(allow_mismatch), progress
        path = checkpoint if checkpoint is not None else WEIGHTS / f"{shipped}.pt"
        self.checkpoint = str(path)
        self._state = learned_file.read(path, learner=self.learner)
        self._net = learned_file.load_network(self._state, f"method.checkpoint={path}")
        self.weights = learned_file.file_digest(path)  # part of the result key: retrained weights are new results
        self.trained_steps = int(self._state["step"])

    def check_problem(self, record: dict) -> None:
        key = f"method.checkpoint={self.checkpoint}"
        trained, current = self._state["problem"]["dataset"]["shape"], record["dataset"]["shape"]
        if list(trained) != list(current):  # a transfer experiment can change the problem, not the network's input
            raise ConfigError(f"{key} takes images of shape {tuple(trained)}, the dataset's images have shape "
                              f"{tuple(current)}, which method.allow_mismatch=true cannot bridge: use a dataset of "
                              "that image shape, or train a model for this one with scripts/train.py.")
        learned_file.check_problem(self._state, record, key, self.allow_mismatch)

    def network(self, problem):
        """The network on the problem's device."""
        self._net = self._net.to(problem.measurement.y.device)
        return self._net
