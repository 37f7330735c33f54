"""The number of function evaluations (NFE) of a recovery, counted where the network is called."""
from __future__ import annotations


class CountedPrior:
    """A prior that counts its network evaluations: each ``score`` or ``denoise`` call on a batch
    is one NFE per image. Every other attribute is the prior's own. ``Method.recover`` hands one to
    each method, which reports ``prior.nfe``."""

    def __init__(self, prior):
        self._prior, self.nfe = prior, 0

    def score(self, x, sigma):
        self.nfe += 1
        return self._prior.score(x, sigma)

    def denoise(self, x, sigma):
        self.nfe += 1
        return self._prior.denoise(x, sigma)

    def __getattr__(self, name):
        return getattr(self._prior, name)
