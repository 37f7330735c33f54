"""Annealed Langevin dynamics with a likelihood score (QCS-SGM's Algorithm 1, docs/math.md §3).

    alpha_t = eps * beta_t^2 / beta_L^2
    x <- x + alpha_t [ s(x, beta_t) + w * L(x, beta_t) ] + sqrt(2 alpha_t) zeta

One loop serves every likelihood score L of qcsbench.likelihood (diagonal, EP, linear). Like every
sampler in qcsbench.samplers it is called ``(prior, x, sigmas, rng, ...)``.
"""
from __future__ import annotations

import math

import torch

from qcsbench.progress import steps

WEIGHTINGS = ("plain", "norm_ratio", "norm_ratio_batch")


def likelihood_weight(gamma, weighting, prior_score, lik_score):
    """w = gamma, or gamma * ||s|| / ||L|| per image, or over the whole batch (the QCS-SGM+ reference
    code). The batch norms leave out the images whose scores are not finite: a chain that has
    diverged stays diverged, but no longer turns every other chain of its batch into NaN."""
    if weighting == "plain":
        return gamma
    flat_s, flat_l = prior_score.flatten(1), lik_score.flatten(1)
    if weighting == "norm_ratio_batch":
        finite = (torch.isfinite(flat_s).all(1) & torch.isfinite(flat_l).all(1)).unsqueeze(1)
        flat_s, flat_l = torch.where(finite, flat_s, 0.0), torch.where(finite, flat_l, 0.0)
        return gamma * flat_s.norm() / flat_l.norm().clamp_min(1e-30)
    weight = gamma * flat_s.norm(dim=1) / flat_l.norm(dim=1).clamp_min(1e-30)
    return weight.view(-1, *[1] * (prior_score.dim() - 1))


def step_sizes(step_lr, betas, likelihood_score, gamma, weighting, max_step_ratio) -> list[float]:
    """alpha_t = eps beta_t^2 / beta_L^2 for every level, capped at max_step_ratio / curvature when a
    plain-weighted likelihood score bounds its curvature: the prior's -Hessian at level beta is at
    most 1 / beta^2, so alpha (1 / beta^2 + gamma L_t) < 2 keeps the update stable. All levels are
    computed here, before the loop: the bounds are read from the device once, not once per level."""
    alphas = [step_lr * (beta / betas[-1]) ** 2 for beta in betas]
    bounds = getattr(likelihood_score, "curvature_bounds", None)
    if max_step_ratio is None or weighting != "plain" or bounds is None:
        return alphas
    curvatures = bounds(betas).tolist()
    return [min(alpha, max_step_ratio / (1.0 / beta**2 + gamma * c)) for alpha, beta, c in zip(alphas, betas, curvatures)]


@torch.no_grad()
def annealed_langevin(prior, x, sigmas, rng, likelihood_score, step_lr=2e-4, steps_per_level=5, gamma=1.0,
                      weighting="plain", progress=True, max_step_ratio=None, callback=None):
    """Run the sampler from x; returns x. ``max_step_ratio`` caps the step where the likelihood
    would make it unstable (see ``step_sizes``); ``callback`` sees each step's x before its
    update and the prior's score there.

    Everything a level needs is computed before the loop, and the step sizes and noise scales
    are put on x's device as one tensor each, so a step reads nothing back from the device
    (tests/test_host_syncs.py). The prior is given each level as a Python float from the host
    ladder, as before."""
    betas = [float(s) for s in sigmas]
    alphas = step_sizes(step_lr, betas, likelihood_score, gamma, weighting, max_step_ratio)
    step = torch.tensor(alphas, dtype=torch.float64, device=x.device).unbind()
    noise = torch.tensor([math.sqrt(2 * a) for a in alphas], dtype=torch.float64, device=x.device).unbind()
    i = 0
    for level in steps(range(len(betas)), "langevin", progress):
        beta, alpha, noise_scale = betas[level], step[level], noise[level]
        for _ in range(steps_per_level):
            prior_score = prior.score(x, beta)
            if callback is not None:
                callback(dict(i=i, sigma=beta, x=x, score=prior_score))
            lik = likelihood_score(x, beta)
            w = likelihood_weight(gamma, weighting, prior_score, lik)
            x = x + alpha * (prior_score + w * lik) + noise_scale * rng.randn(*x.shape[1:], dtype=x.dtype)
            i += 1
    return x
