"""Per-image quality metrics (MATH.md section 7); aggregate by averaging over images.

PSNR uses data range 1 per image. SSIM is torchmetrics' (11 x 11 Gaussian window,
sigma 1.5), not scikit-image's 7 x 7 uniform window the QCS-SGM code used. 1-bit
measurements without dither carry no information on the norm of x, so the cosine
similarity and the PSNR after the best scalar fit are reported next to the plain PSNR.
"""
from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

NAMES = ("psnr", "ssim", "nmse", "cosine", "psnr_scaled")


def _flat(x):
    return x.reshape(x.shape[0], -1).double()


def psnr(x_hat, x):
    return peak_signal_noise_ratio(x_hat.double(), x.double(), data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(x_hat, x):
    return structural_similarity_index_measure(x_hat.double(), x.double(), data_range=1.0, reduction="none")


def nmse(x_hat, x):
    return ((_flat(x_hat) - _flat(x)) ** 2).sum(1) / (_flat(x) ** 2).sum(1)


def cosine(x_hat, x):
    return torch.nn.functional.cosine_similarity(_flat(x_hat), _flat(x), dim=1)


def psnr_scaled(x_hat, x):
    """PSNR of c * x_hat with the least-squares scale c = <x_hat, x> / <x_hat, x_hat>."""
    a, b = _flat(x_hat), _flat(x)
    c = (a * b).sum(1, keepdim=True) / (a * a).sum(1, keepdim=True).clamp_min(1e-30)
    return psnr((c * a).view_as(x_hat), x)


def evaluate(x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric per image, as float64 tensors of shape (B,), on the CPU."""
    x_hat, x = x_hat.detach().cpu(), x.detach().cpu()
    fns = dict(psnr=psnr, ssim=ssim, nmse=nmse, cosine=cosine, psnr_scaled=psnr_scaled)
    return {name: fns[name](x_hat, x).double() for name in NAMES}
