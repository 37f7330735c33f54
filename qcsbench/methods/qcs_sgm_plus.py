"""QCS-SGM+ (arXiv 2302.00919): QCS-SGM's sampler with the expectation-propagation likelihood score."""
from __future__ import annotations

from qcsbench.ep import EPLikelihoodScore
from qcsbench.errors import ConfigError
from qcsbench.methods.qcs_sgm import QCSSGM


class QCSSGMPlus(QCSSGM):
    """Everything of :class:`QCSSGM` (same annealed Langevin loop, same options) except the
    likelihood score, which is EP's (docs/math.md §4) instead of the diagonal one.
    ep_max_iter, ep_damping, ep_tolerance: see :class:`~qcsbench.ep.EPLikelihoodScore`.
    The defaults are the reference's MNIST setting: gamma 0.5 with the batch norm-ratio weighting."""

    name = "qcs_sgm_plus"

    def __init__(self, name="qcs_sgm_plus", gamma=0.5, weighting="norm_ratio_batch", ep_max_iter=None, ep_damping=0.02,
                 ep_tolerance=None, **kwargs):
        super().__init__(name=name, gamma=gamma, weighting=weighting, **kwargs)
        if ((ep_max_iter is not None and int(ep_max_iter) < 1) or not 0 <= ep_damping < 1
                or (ep_tolerance is not None and not ep_tolerance >= 0)):
            raise ConfigError(f"method.ep_max_iter={ep_max_iter}, method.ep_damping={ep_damping}, "
                              f"method.ep_tolerance={ep_tolerance} are not allowed: use ep_max_iter >= 1 (or null), "
                              "0 <= ep_damping < 1 and ep_tolerance >= 0 (or null for the reference's value).")
        self.ep = dict(max_iter=None if ep_max_iter is None else int(ep_max_iter), damping=float(ep_damping),
                       tolerance=ep_tolerance)

    def likelihood_score(self, problem):
        return EPLikelihoodScore(problem, **self.ep)

    def stats(self, likelihood_score):
        """EP's sweeps per image: the mean and the largest over the sampler's calls."""
        return likelihood_score.sweep_counts()
