"""Priors: score / denoiser models behind one VE interface on [0, 1] data."""
from qcsbench.priors.base import Prior, geometric_sigmas
from qcsbench.priors.gmm import GaussianMixturePrior, fitted_gmm

__all__ = ["Prior", "geometric_sigmas", "GaussianMixturePrior", "fitted_gmm"]
