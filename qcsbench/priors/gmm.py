"""A Gaussian mixture prior with an exact score at every noise level (docs/math.md §2).

p(x) = sum_k pi_k N(mu_k, C_k)  =>  p_sigma = sum_k pi_k N(mu_k, C_k + sigma^2 I).
With C_k = U_k diag(lam_k) U_k^T stored, each level costs one projection per component.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import torch

from qcsbench.errors import ConfigError
from qcsbench.files import save_tensors
from qcsbench.priors.base import Prior, broadcast_sigma, geometric_sigmas
from qcsbench.settings import LADDER, SEED32, descending_ladder, integer, number, settings

log = logging.getLogger(__name__)

# The largest image (pixels N) a full-covariance mixture is fitted for. Measured on 2 CPU cores:
# MNIST (N = 784, 20 components) fits in about 20 s; at CIFAR-10's N = 3,072 the fit took 523 s and
# +8.8 GB on only 500 images (each EM iteration costs O(K N^3 + K n N^2), the K covariances
# K N^2 x 8 bytes, 1.5 GB at CIFAR, 24 GB at CelebA 64), and the model does not improve with it.
MAX_PIXELS = 1024


def check_size(shape, n_components) -> None:
    """Stop, before the training images are read, a mixture too big to fit (MAX_PIXELS)."""
    n = math.prod(shape)
    if n > MAX_PIXELS:
        gigabytes = n_components * n * n * 8 / 1e9
        raise ConfigError(f"prior=gmm does not scale to {n}-pixel images (its {n_components} full covariances alone "
                          f"would take {gigabytes:.1f} GB and the fit hours; it is fitted up to {MAX_PIXELS} "
                          f"pixels): use a score network for images this size, e.g. prior=ncsnv2_cifar10, "
                          f"ncsnv2_celeba, adm_ffhq, ddpm, ncsnpp or trained.")


class GaussianMixturePrior(Prior):
    name = "gmm"

    def __init__(self, weights, means, eigvals, eigvecs, shape, sigmas):
        self.log_weights = torch.log(torch.as_tensor(weights))
        self.means = torch.as_tensor(means)  # (K, d)
        self.eigvals = torch.as_tensor(eigvals).clamp_min(0)  # (K, d)
        self.eigvecs = torch.as_tensor(eigvecs)  # (K, d, d), columns are eigenvectors
        self.shape = tuple(shape)
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        self._layout()

    def _layout(self):
        """Every component's eigenvectors side by side, so that projecting onto all of them,
        and back, is one matrix product each (a batched einsum copies U on every call)."""
        k, d, _ = self.eigvecs.shape
        self.u_cat = self.eigvecs.permute(1, 0, 2).reshape(d, k * d).contiguous()  # x @ u_cat = [U_k^T x]_k
        self.u_cat_t = self.u_cat.T.contiguous()
        self.mean_proj = torch.einsum("kd,kde->ke", self.means, self.eigvecs)  # U_k^T mu_k

    @classmethod
    def from_covariances(cls, weights, means, covariances, shape, sigmas):
        lam, u = torch.linalg.eigh(torch.as_tensor(covariances, dtype=torch.float64))
        return cls(torch.as_tensor(weights, dtype=torch.float64), torch.as_tensor(means, dtype=torch.float64),
                   lam, u, shape, sigmas)

    def to(self, device=None, dtype=None):
        out = GaussianMixturePrior.__new__(GaussianMixturePrior)
        for key in ("log_weights", "means", "eigvals", "eigvecs"):
            setattr(out, key, getattr(self, key).to(device=device, dtype=dtype))
        out.shape, out.sigmas = self.shape, self.sigmas
        out._layout()
        return out

    def _components(self, x, sigma):
        """Projections p = U^T (x - mu), inverse variances and log joint densities per component.
        The variances are (K, d) for one sigma, (B, K, d) for one sigma per image."""
        flat = x.reshape(x.shape[0], -1)
        k, d = self.means.shape
        proj = (flat @ self.u_cat).view(-1, k, d) - self.mean_proj
        var = self.eigvals + broadcast_sigma(sigma, proj) ** 2
        inv = 1.0 / var
        log_comp = -0.5 * ((proj * proj * inv).sum(-1) + torch.log(var).sum(-1) + d * math.log(2 * math.pi))
        return proj, inv, self.log_weights + log_comp

    def log_prob(self, x, sigma):
        """log p_sigma(x) per image, in x's dtype (computed in the mixture's)."""
        inside = x.to(self.means.dtype)
        return torch.logsumexp(self._components(inside, sigma)[2], dim=1).to(x.dtype)

    def score(self, x, sigma):
        """sum_k r_k (x) (-(C_k + sigma^2 I)^{-1} (x - mu_k)), r_k the posterior responsibilities."""
        inside = x.to(self.means.dtype)
        proj, inv, log_joint = self._components(inside, sigma)
        resp = torch.softmax(log_joint, dim=1)  # (B, K)
        weighted = (resp[..., None] * proj * inv).reshape(x.shape[0], -1)  # (B, K d)
        return -(weighted @ self.u_cat_t).view_as(x).to(x.dtype)


def parameters_digest(state: dict) -> str:
    """SHA-256 of a cached mixture's parameters and key, stored beside them: an edited or damaged
    file is refitted, not used (a checksum, not a signature: keep the cache folder your own)."""
    h = hashlib.sha256(str(state.get("key")).encode() + str(state.get("shape")).encode())
    for name in ("weights", "means", "eigvals", "eigvecs"):
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def enough_images(group: str, values: dict) -> None:
    """A mixture needs at least as many training images as components (scikit-learn's rule);
    with max_train set that is known before the data is read, otherwise fitted_gmm checks it."""
    count, components = values.get("max_train"), values.get("n_components")
    if count is not None and components is not None and components > count:
        raise ConfigError(f"{group}.n_components={components} is not allowed with {group}.max_train={count}: "
                          "a mixture needs at least as many training images as components.")


@settings("prior", (descending_ladder, enough_images), n_components=integer(1), reg_covar=number(0, lo_open=True),
          max_train=integer(2, null=True), seed=integer(0, SEED32), max_iter=integer(1), **LADDER)
def fitted_gmm(train: torch.Tensor, n_components: int = 20, reg_covar: float = 1e-3, max_train: int | None = None,
               seed: int = 0, max_iter: int = 100, cache_dir: str = "~/.cache/qcsbench",
               sigma_max: float = 50.0, sigma_min: float = 0.01, num_levels: int = 232,
               name: str = "gmm") -> GaussianMixturePrior:
    """Fit a full-covariance mixture with scikit-learn on the first ``max_train`` of the training
    images ``train`` (N, C, H, W), or load it from ``cache_dir`` when the same images and
    parameters were fitted before (the cache is keyed by a hash of the images themselves)."""
    from sklearn.mixture import GaussianMixture

    if not isinstance(train, torch.Tensor) or train.dim() != 4:
        raise TypeError("fitted_gmm takes the training images as one (N, C, H, W) tensor")
    check_size(train.shape[1:], n_components)
    count = len(train) if max_train is None else min(len(train), int(max_train))
    if count < max(2, n_components):  # scikit-learn's own limits, said before it starts
        raise ConfigError(f"prior.n_components={n_components} is not allowed with {count} training images: "
                          "a mixture needs at least two images and at least as many as components.")
    images = train[:count].float().contiguous()
    key = dict(images=hashlib.sha256(images.numpy().tobytes()).hexdigest(), shape=list(images.shape),
               n_components=n_components, reg_covar=reg_covar, seed=seed, max_iter=max_iter)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir).expanduser() / f"gmm-{digest}.pt"
    sigmas = geometric_sigmas(sigma_max, sigma_min, num_levels)
    shape = tuple(images.shape[1:])
    if path.is_file():
        try:
            state = torch.load(path, weights_only=True)
            if state.get("key") != json.dumps(key, sort_keys=True) or state.get("check") != parameters_digest(state):
                raise ValueError("its recorded key or checksum is not this fit's")  # copied, renamed or edited
            prior = GaussianMixturePrior(state["weights"], state["means"], state["eigvals"], state["eigvecs"],
                                         state["shape"], sigmas)
            log.info("loaded the Gaussian mixture prior from %s", path)
            return prior
        except Exception as err:  # truncated, corrupt or not this fit: fit again and replace it
            log.warning("the cached Gaussian mixture %s cannot be read or is not this fit (%s: %s); fitting it again",
                        path, type(err).__name__, err)

    data = images.reshape(count, -1).double().numpy()
    log.info("fitting a %d-component Gaussian mixture on %d training images (cached afterwards)", n_components, count)
    gm = GaussianMixture(n_components, covariance_type="full", reg_covar=reg_covar, random_state=seed,
                         max_iter=max_iter).fit(data)
    prior = GaussianMixturePrior.from_covariances(gm.weights_, gm.means_, gm.covariances_, shape, sigmas)
    try:
        state = dict(weights=torch.exp(prior.log_weights), means=prior.means, eigvals=prior.eigvals,
                     eigvecs=prior.eigvecs, shape=list(shape), key=json.dumps(key, sort_keys=True))
        save_tensors(path, dict(state, check=parameters_digest(state)))
    except OSError as err:  # a full disk or a read-only cache costs the next run a refit, not this run
        log.warning("could not cache the fitted Gaussian mixture in %s (%s); it is fitted again next time",
                    path, err.strerror or err)
    return prior


def check_images(shape, node) -> None:
    """The set-up's question to a prior before it is built: a mixture too big for these images
    stops before the train split is read (any prior factory may answer it)."""
    check_size(shape, node.get("n_components", 20))


fitted_gmm.check_images = check_images
