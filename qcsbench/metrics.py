"""Per-image quality metrics (docs/math.md §7); aggregate by averaging over images.

PSNR uses data range 1 per image. SSIM is torchmetrics' (11 x 11 Gaussian window,
sigma 1.5), not scikit-image's 7 x 7 uniform window the QCS-SGM code used. 1-bit
measurements without dither carry no information on the norm of x, so the cosine
similarity and the PSNR after the best scalar fit are reported next to the plain PSNR.
LPIPS (``lpips``) is not among the default metrics: it needs torchvision and AlexNet's
ImageNet weights, which nothing here installs or downloads.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from qcsbench.errors import ConfigError

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


LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet ImageNet weights, LPIPS's usual backbone


def lpips(x_hat, x):
    """LPIPS with the AlexNet backbone (torchmetrics; lower is closer), per image.

    Offline only: torchvision must be installed and AlexNet's weights must already sit in
    TORCH_HOME/hub/checkpoints; otherwise one sentence says what is missing. Gray images are
    repeated to three channels, and x_hat is clipped to [0, 1], the range LPIPS accepts.
    AlexNet needs images of at least about 32 x 32 pixels (MNIST's 28 x 28 is too small)."""
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # missing, or a build for another torch (a CUDA wheel next to a CPU torch fails here)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"LPIPS needs torchvision, which cannot be imported here ({reason}): install the "
                          f"torchvision build that matches your torch and put AlexNet's ImageNet weights "
                          f"({LPIPS_BACKBONE}) in TORCH_HOME/hub/checkpoints.") from None
    weights = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE
    if not weights.is_file():
        raise ConfigError(f"LPIPS needs AlexNet's ImageNet weights at {weights}, which is missing: copy "
                          f"{LPIPS_BACKBONE} there (TORCH_HOME sets the folder); nothing is downloaded.")
    from torchmetrics.functional.image import learned_perceptual_image_patch_similarity

    def rgb(v):
        return v.float().expand(-1, 3, -1, -1) if v.shape[1] == 1 else v.float()

    return learned_perceptual_image_patch_similarity(rgb(x_hat.clamp(0, 1)), rgb(x), net_type="alex",
                                                     reduction="none", normalize=True).double()


def evaluate(x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric per image, as float64 tensors of shape (B,), on the CPU."""
    x_hat, x = x_hat.detach().cpu(), x.detach().cpu()
    fns = dict(psnr=psnr, ssim=ssim, nmse=nmse, cosine=cosine, psnr_scaled=psnr_scaled)
    return {name: fns[name](x_hat, x).double() for name in NAMES}
