"""The exact-posterior yardstick: run a method on small problems whose posterior we can sample
exactly (a random Gaussian-mixture prior, see qcsbench/exact_posterior.py) and measure how far
its samples are from that posterior.

A setting is a problem family (N, M, bits, operator); each replicate draws a prior, an A, a
truth x* from the prior and its measurement y. Per replicate, with m and Cov the exact
posterior's mean and covariance and m', v' the mean and per-coordinate variance of the
method's samples:

    mean error    ||m' - m|| / sqrt(tr Cov)          a perfect sampler with n' draws scores about
                                                     sqrt(1/n' + 1/n) (both sample means' noise)
    spread        sqrt(sum_i v'_i / tr Cov)          1 for a posterior sampler, 0 for a point estimate
    z^2           mean_i (x*_i - m'_i)^2 / v'_i      the truth's squared per-coordinate Mahalanobis
                                                     distance; its average over replicates is 1 for
                                                     the exact posterior (x* is a draw from it)
    coverage      share of coordinates whose central 90 % interval of the samples holds x*_i (0.9)
    MSE           mean_i (m'_i - x*_i)^2             against the exact posterior mean's MSE, the MMSE
    diverged      share of the method's samples that are NaN or Inf (left out of the figures above)

z^2 and coverage are also computed for the exact sampler's own draws: with a handful of
replicates they scatter around 1 and 0.9, and that scatter is the yardstick's resolution.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qcsbench.channels import GaussianNoise, Measurement, UniformQuantizer
from qcsbench.exact_posterior import GibbsPosterior, mixture_draws
from qcsbench.operators import gaussian, ill_conditioned
from qcsbench.operators.dense import haar_orthonormal_columns
from qcsbench.priors import GaussianMixturePrior, geometric_sigmas
from qcsbench.problem import Problem
from qcsbench.randomness import MEASUREMENT, SAMPLER, ImageRandom, seed_for
from qcsbench.spread import coverage

# The framework's default ladder (50 -> 0.01 in 232 levels) sets the density of the short ladders:
# the same ratio between neighbouring levels, over the range the small prior needs.
LEVEL_RATIO = (50.0 / 0.01) ** (1 / 231)
SIGMA_MIN = 0.01
OPERATORS = ("gaussian", "ill_conditioned")


@dataclass(frozen=True)
class Setting:
    """A problem family. bits = 0 is the unquantized channel; kappa only for ill_conditioned."""

    n: int
    m: int
    bits: int
    operator: str = "gaussian"
    kappa: float = 1000.0
    noise_std: float = 0.05
    components: int = 3

    @property
    def label(self) -> str:
        channel = "linear" if self.bits == 0 else f"{self.bits} bit"
        a = "Gaussian A" if self.operator == "gaussian" else f"kappa {self.kappa:g} A"
        return f"N={self.n} M={self.m} {channel} {a}"


def random_mixture(n: int, components: int, g: torch.Generator) -> GaussianMixturePrior:
    """A mixture on [0, 1]^n that the methods' final clamp to [0, 1] leaves almost untouched: means
    uniform in 0.5 +- 0.15 sqrt(2 / n) (so the distance between components, about 0.2, does not grow
    with n: in many dimensions well separated components would leave the exact Gibbs sampler stuck
    in the component it started in), random orientations, standard deviations log-uniform in
    [0.04, 0.1] (at least four times the ladder's last level). Its ladder runs geometrically from
    twice the mixture's overall spread, sqrt(tr Cov_mix), down to 0.01, at the framework's level
    density."""
    f64 = torch.float64
    weights = 0.5 + torch.rand(components, generator=g, dtype=f64)
    means = 0.5 + 0.15 * math.sqrt(2 / n) * (2 * torch.rand(components, n, generator=g, dtype=f64) - 1)
    stds = torch.exp(math.log(0.04) + math.log(2.5) * torch.rand(components, n, generator=g, dtype=f64))
    rotations = torch.stack([haar_orthonormal_columns(n, n, g) for _ in range(components)])
    weights = weights / weights.sum()
    spread = (weights[:, None] * (stds**2 + (means - weights @ means) ** 2)).sum().sqrt()
    sigma_max = max(2 * float(spread), 2 * SIGMA_MIN)
    levels = 1 + math.ceil(math.log(sigma_max / SIGMA_MIN) / math.log(LEVEL_RATIO))
    return GaussianMixturePrior(weights, means, stds**2, rotations, (1, 1, n),
                                geometric_sigmas(sigma_max, SIGMA_MIN, levels))


@dataclass
class Instance:
    """One replicate: the prior, the problem (one image, float64 measurement) and the truth (N,)."""

    setting: Setting
    replicate: int
    prior: GaussianMixturePrior
    problem: Problem
    truth: torch.Tensor


def make_instance(setting: Setting, replicate: int, seed: int = 0) -> Instance:
    key = seed_for(seed, setting.n, setting.m, setting.bits, OPERATORS.index(setting.operator), replicate)
    g = torch.Generator().manual_seed(key)
    prior = random_mixture(setting.n, setting.components, g)
    shape = prior.shape
    if setting.operator == "gaussian":
        op = gaussian(shape, setting.m, seed=key)
    else:
        op = ill_conditioned(shape, setting.m, seed=key, kappa=setting.kappa)
    op = op.to(dtype=torch.float64)  # the float32 matrix every method gets, held exactly
    if setting.bits == 0:
        channel = GaussianNoise(setting.noise_std)
    else:
        channel = UniformQuantizer(setting.bits, setting.noise_std)
    truth = mixture_draws(prior, 1, g)
    meas = channel.measure(op.forward(truth.view(1, *shape)), ImageRandom(key, [0], MEASUREMENT))
    return Instance(setting, replicate, prior, Problem(op, channel, meas), truth[0])


def exact_samples(instance: Instance, num_samples: int, sweeps: int, seed: int = 0):
    """(draws (num_samples, N), drift): the chains' final states, and how far their mean moved over
    the second half of the sweeps, ||m_end - m_half|| / sqrt(tr Cov). Chains that have reached the
    posterior by half-way move only by Monte Carlo noise, below sqrt(2 / num_samples)."""
    g = torch.Generator().manual_seed(seed_for(seed, 2))
    sampler = GibbsPosterior(instance.prior, instance.problem)
    half = sampler.sample(num_samples, g, sweeps // 2)
    draws = sampler.sample(num_samples, g, sweeps - sweeps // 2, start=half).reshape(num_samples, -1)
    half = half.reshape(num_samples, -1)
    drift = float((draws.mean(0) - half.mean(0)).norm() / draws.var(0).sum().sqrt())
    return draws, drift


def method_samples(method, instance: Instance, num_samples: int, seed: int = 0) -> torch.Tensor:
    """``num_samples`` runs of ``method`` on copies of the instance's measurement, in float32 as
    the runner runs them (one sampler stream per copy); (num_samples, N) in float64."""
    f32 = torch.float32
    meas = instance.problem.measurement
    copies = Measurement(*(t.to(f32).expand(num_samples, -1).contiguous() for t in (meas.y, meas.lower, meas.upper)))
    problem = Problem(instance.problem.operator.to(dtype=f32), instance.problem.channel, copies)
    rng = ImageRandom(seed, range(num_samples), SAMPLER)
    x = method.recover(problem, instance.prior.to(dtype=f32), rng).x_hat
    return x.double().reshape(num_samples, -1)


def figures(samples: torch.Tensor, exact: torch.Tensor, truth: torch.Tensor) -> dict:
    """The module docstring's figures of ``samples`` against the exact draws and the truth, over the
    samples that are finite (``diverged``: the share that is not; all figures None if none is).
    z^2 and coverage are None for a point estimate (samples without spread); a coordinate without
    spread that misses the truth makes z^2 infinite."""
    finite = torch.isfinite(samples).all(1)
    out = dict(diverged=1 - float(finite.double().mean()), mean_error=None, spread=None, mse=None, z2=None,
               coverage=None)
    samples = samples[finite]
    if len(samples) == 0:
        return out
    mean, exact_mean = samples.mean(0), exact.mean(0)
    exact_trace = exact.var(0).sum()
    var = samples.var(0) if len(samples) > 1 else torch.zeros_like(mean)
    out.update(mean_error=float((mean - exact_mean).norm() / exact_trace.sqrt()),
               spread=float((var.sum() / exact_trace).sqrt()), mse=float(((mean - truth) ** 2).mean()))
    if bool((var > 0).any()):
        out["z2"] = float(((truth - mean) ** 2 / var).mean())
        out["coverage"] = coverage(samples, truth)
    return out


def evaluate(method, instances, exact: list[torch.Tensor], num_samples: int, seed: int = 0) -> list[dict]:
    """One row per instance: the method's figures and the exact sampler's own (prefixed exact_)."""
    rows = []
    for instance, draws in zip(instances, exact):
        mine = figures(method_samples(method, instance, num_samples, seed), draws, instance.truth)
        own = figures(draws, draws, instance.truth)
        row = dict(setting=instance.setting.label, **mine)
        row.update({f"exact_{k}": own[k] for k in ("z2", "coverage", "mse")})
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """Averages over the rows with at least one finite sample (``diverged`` over all rows); a figure
    missing from one of them (z^2 of a point estimate) is missing from the average. The MMSE gap is
    10 log10 of the ratio of the averaged MSEs, in dB."""
    valid = [r for r in rows if r["mean_error"] is not None]

    def avg(key):
        values = [r[key] for r in valid if r[key] is not None]
        return sum(values) / len(values) if valid and len(values) == len(valid) else None
    keys = ("mean_error", "spread", "z2", "coverage", "mse", "exact_z2", "exact_coverage", "exact_mse")
    out = {k: avg(k) for k in keys}
    out["diverged"] = sum(r["diverged"] for r in rows) / len(rows)
    out["mmse_gap_db"] = None if out["mse"] is None else 10 * math.log10(out["mse"] / out["exact_mse"])
    return out


def _fmt(value, digits=3):
    return "—" if value is None else f"{value:.{digits}g}"


def exact_table(instances, exact, drifts) -> str:
    """The exact sampler per problem: its drift over the second half of the sweeps (converged chains
    stay below sqrt(2 / n), printed as the floor), the posterior's per-pixel spread and the MMSE."""
    lines = ["| problem | replicate | drift (floor) | posterior std per pixel | MMSE |", "|---|---|---|---|---|"]
    for inst, draws, drift in zip(instances, exact, drifts):
        cells = [inst.setting.label, inst.replicate, f"{drift:.3f} ({math.sqrt(2 / len(draws)):.3f})",
                 _fmt(float(draws.var(0).mean().sqrt())), _fmt(float(((draws.mean(0) - inst.truth) ** 2).mean()))]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def markdown_table(rows: list[dict], first_column: str = "problem", total: bool = True) -> str:
    """One line per value of rows' "setting" (its rows averaged), and with ``total`` one over all
    rows when there are several settings."""
    header = (f"| {first_column} | mean error / spread | spread ratio | z² (exact) | 90 % coverage (exact) "
              "| MSE (exact MMSE) | MMSE gap dB | diverged |\n|---|---|---|---|---|---|---|---|")
    lines = [header]
    groups = {}
    for r in rows:
        groups.setdefault(r["setting"], []).append(r)
    every = [("**all**", rows)] if total and len(groups) > 1 else []
    for label, group in [*groups.items(), *every]:
        s = summary(group)
        gap = "—" if s["mmse_gap_db"] is None else f"{s['mmse_gap_db']:+.2f}"
        cells = [label, _fmt(s["mean_error"]), _fmt(s["spread"]), f"{_fmt(s['z2'])} ({_fmt(s['exact_z2'])})",
                 f"{_fmt(s['coverage'], 2)} ({_fmt(s['exact_coverage'], 2)})",
                 f"{_fmt(s['mse'])} ({_fmt(s['exact_mse'])})", gap, f"{s['diverged']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pixel_rms(prior: GaussianMixturePrior) -> float:
    """sqrt(E ||x||^2 / N) under the mixture: sum_k pi_k (||mu_k||^2 + tr C_k), per pixel."""
    weights = torch.exp(prior.log_weights)
    energy = (weights * ((prior.means**2).sum(1) + prior.eigvals.sum(1))).sum()
    return float((energy / prior.means.shape[1]).sqrt())
