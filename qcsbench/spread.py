"""The posterior spread of several recoveries of one image (``num_samples`` > 1; docs/math.md §7).

With S samples x^(1), ..., x^(S) of an image (each flattened to its N pixel values), their mean m
(the MMSE estimate the run scores), their per-pixel standard deviation s (the n - 1 estimate) and
the truth x*, per image:

    posterior_std    mean_j s_j                                   how much the samples disagree
    coverage         share of pixels j whose central 90 % interval of the samples (their 5 % and
                     95 % quantiles) holds x*_j                    0.9 for the true posterior
    std_error_corr   Pearson correlation over pixels of s_j and |m_j - x*_j|: whether the spread
                     marks where the estimate is wrong; None where either is constant

The quantiles interpolate linearly between the sorted samples (numpy's default ``linear``), as
the exact-posterior yardstick (qcsbench/calibration.py) computes its coverage. Beside them a run
reports the mean of the samples' own metrics (``psnr_single``, ...: what one sample scores).
"""
from __future__ import annotations

import torch

from qcsbench import metrics

STATISTICS = ("posterior_std", "coverage", "std_error_corr")
SINGLE = tuple(f"{name}_single" for name in metrics.NAMES)
# The per-image numbers a run with several samples adds to the metrics of the samples' mean.
NAMES = (*SINGLE, *STATISTICS)
INTERVAL = (0.05, 0.95)


def quantile(samples: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile over the first dimension, interpolated linearly between order statistics
    (torch.quantile's and numpy's default, without torch.quantile's limit of 2^24 values)."""
    ordered = samples.sort(0).values
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


def coverage(samples: torch.Tensor, truth: torch.Tensor) -> float:
    """The share of coordinates whose central 90 % interval of ``samples`` (S, N) holds ``truth`` (N,)."""
    lo, hi = (quantile(samples, q) for q in INTERVAL)
    return float(((truth >= lo) & (truth <= hi)).double().mean())


def correlation(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Pearson's correlation of two vectors; None where either is constant."""
    a, b = a - a.mean(), b - b.mean()
    scale = float(((a * a).sum() * (b * b).sum()).sqrt())
    return float((a * b).sum()) / scale if scale > 0 else None


def statistics(samples: torch.Tensor, truth: torch.Tensor) -> dict:
    """The three figures of the module docstring for one image: ``samples`` (S, ...) with S >= 2,
    ``truth`` of the shape of one sample; computed in float64."""
    samples = samples.reshape(len(samples), -1).double()
    truth = truth.reshape(-1).double()
    std = samples.std(0)
    return dict(posterior_std=float(std.mean()), coverage=coverage(samples, truth),
                std_error_corr=correlation(std, (samples.mean(0) - truth).abs()))
