"""The method interface: ``recover(problem, prior, rng) -> Recovery``."""
from __future__ import annotations

from qcsbench.errors import ConfigError
from qcsbench.priors import Prior, geometric_sigmas
from qcsbench.problem import Problem, Recovery
from qcsbench.randomness import as_stream


def check_prior_fits(problem: Problem, prior) -> None:
    """Stop before any compute when the prior was made for images of another shape."""
    shape = getattr(prior, "shape", None)
    if shape is not None and tuple(shape) != tuple(problem.shape):
        raise ConfigError(f"the prior takes images of shape {tuple(shape)}, the problem's images have shape "
                          f"{tuple(problem.shape)}: use a prior made for that image size, or resize the images.")


class Method:
    """A recovery algorithm. Subclasses write ``_recover(problem, prior, stream)``; users call
    ``recover``, which accepts any random source and checks that the prior fits the images."""

    name = "method"

    def recover(self, problem: Problem, prior: Prior, rng=0) -> Recovery:
        """rng: a seed, a torch.Generator or an ImageRandom (per-image streams, as run.py uses)."""
        check_prior_fits(problem, prior)
        return self._recover(problem, prior, as_stream(rng, problem.batch_size, problem.measurement.y.device))

    def _recover(self, problem: Problem, prior: Prior, rng) -> Recovery:
        raise NotImplementedError

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
                    out[attr if key is None else key if attr == "ladder" else f"{attr}_{key}"] = v
        return out


def noise_ladder(prior: Prior, sigma_max=None, sigma_min=None, num_levels=None):
    """The prior's own ladder unless the method config overrides part of it (then geometric)."""
    if sigma_max is None and sigma_min is None and num_levels is None:
        return prior.sigmas
    sigma_max = float(prior.sigmas[0]) if sigma_max is None else sigma_max
    sigma_min = float(prior.sigmas[-1]) if sigma_min is None else sigma_min
    num_levels = len(prior.sigmas) if num_levels is None else num_levels
    if not (sigma_max > sigma_min > 0 and int(num_levels) >= 1):
        raise ConfigError(f"method ladder sigma_max={sigma_max}, sigma_min={sigma_min}, num_levels={num_levels} "
                          "is not allowed: use sigma_max > sigma_min > 0 and num_levels >= 1.")
    return geometric_sigmas(sigma_max, sigma_min, num_levels)
