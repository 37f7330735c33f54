import numpy as np
import pytest
import scipy.stats
import torch

from qcsbench.data import embedded_mnist
from qcsbench.priors import GaussianMixturePrior, fitted_gmm


D = 6


def random_mixture(k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    means = torch.randn(k, D, generator=g, dtype=torch.float64)
    roots = torch.randn(k, D, D, generator=g, dtype=torch.float64) / D**0.5
    covs = roots @ roots.transpose(1, 2) + 0.05 * torch.eye(D, dtype=torch.float64)
    prior = GaussianMixturePrior.from_covariances(weights / weights.sum(), means, covs, (1, 2, 3), [1.0])
    return prior, weights / weights.sum(), means, covs


@pytest.mark.fast
@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0, 10.0])
def test_log_density_matches_scipy(sigma):
    prior, w, mu, c = random_mixture()
    x = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    expected = np.log(sum(float(w[k]) * scipy.stats.multivariate_normal(mu[k].numpy(), (c[k] + sigma**2 * torch.eye(D,
                      dtype=torch.float64)).numpy()).pdf(x.reshape(4, -1).numpy()) for k in range(3)))
    assert np.allclose(prior.log_prob(x, sigma).numpy(), expected, rtol=1e-8)


@pytest.mark.fast
@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0, 10.0])
def test_score_matches_finite_differences_of_the_log_density(sigma):
    prior, *_ = random_mixture()
    x = torch.randn(3, 1, 2, 3, dtype=torch.float64)
    h = 1e-5 * max(sigma, 0.2)
    fd = torch.zeros_like(x).reshape(3, -1)
    for i in range(D):
        e = torch.zeros(D, dtype=torch.float64)
        e[i] = h
        e = e.view(1, 1, 2, 3)
        fd[:, i] = (prior.log_prob(x + e, sigma) - prior.log_prob(x - e, sigma)) / (2 * h)
    assert torch.allclose(prior.score(x, sigma).reshape(3, -1), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.fast
def test_denoiser_is_the_posterior_mean_for_one_component():
    _, _, mu, c = random_mixture(k=1)
    prior = GaussianMixturePrior.from_covariances(torch.ones(1, dtype=torch.float64), mu, c, (1, 2, 3), [1.0])
    x = torch.randn(2, 1, 2, 3, dtype=torch.float64)
    sigma = 0.7
    # E[x0 | x] = mu + C (C + sigma^2 I)^-1 (x - mu), a second formula
    gain = c[0] @ torch.linalg.inv(c[0] + sigma**2 * torch.eye(D, dtype=torch.float64))
    expected = mu[0] + (x.reshape(2, -1) - mu[0]) @ gain.T
    assert torch.allclose(prior.denoise(x, sigma).reshape(2, -1), expected, atol=1e-10)


@pytest.mark.in_process
def test_fitted_mixture_is_cached(tmp_path, monkeypatch):
    train = embedded_mnist("train").batch(range(300))
    first = fitted_gmm(train, n_components=2, max_train=200, max_iter=5, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("gmm-*.pt"))) == 1
    assert first.shape == (1, 28, 28) and len(first.sigmas) == 232

    import sklearn.mixture

    def refuse(*args, **kwargs):
        raise AssertionError("the mixture was fitted again instead of loaded from the cache")

    monkeypatch.setattr(sklearn.mixture.GaussianMixture, "fit", refuse)
    second = fitted_gmm(train, n_components=2, max_train=200, max_iter=5, cache_dir=str(tmp_path))
    assert torch.equal(first.means, second.means)
    with pytest.raises(AssertionError, match="fitted again"):  # other parameters: a new fit
        fitted_gmm(train, n_components=3, max_train=200, max_iter=5, cache_dir=str(tmp_path))
    with pytest.raises(AssertionError, match="fitted again"):  # other images: a new fit
        fitted_gmm(train.flip(0), n_components=2, max_train=200, max_iter=5, cache_dir=str(tmp_path))
