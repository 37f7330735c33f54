"""Per-image quality metrics (docs/math.md §7); aggregate by averaging over images.

PSNR uses data range 1 per image. SSIM is torchmetrics' (11 x 11 Gaussian window,
sigma 1.5) by default. 1-bit measurements without dither carry no information on the norm
of x, so the cosine similarity and the PSNR after the best scalar fit are reported next to
the plain PSNR. LPIPS needs torchvision and its backbone's ImageNet weights, which nothing
here installs or downloads.

A metric profile (``Profile``, the ``metrics=`` config group) says how the same numbers are
defined in a paper's code: ``default`` (the above), ``qcs_sgm`` (the recovery clipped to
[0, 1], scikit-image's 7 x 7 uniform-window SSIM) and ``dps_diffpir`` (8-bit images, LPIPS
with the VGG backbone).
"""
from __future__ import annotations

import importlib.metadata
import inspect
import logging
from pathlib import Path

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from qcsbench.errors import ConfigError
from qcsbench.settings import boolean, choice, settings

log = logging.getLogger(__name__)

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


# torchvision's ImageNet weights of each LPIPS backbone, as torch.hub names them
LPIPS_WEIGHTS = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LPIPS_BACKBONE = LPIPS_WEIGHTS["alex"]  # LPIPS's usual backbone
LPIPS_NAMES = {"alex": "AlexNet", "vgg": "VGG16"}


def lpips_weights(net: str = "alex") -> Path:
    """Where torchvision looks for the backbone's weights: TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_WEIGHTS[net]


def lpips_missing(net: str = "alex") -> str | None:
    """Why LPIPS with this backbone cannot be computed here, in one sentence (None: it can)."""
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # missing, or a build for another torch (a CUDA wheel next to a CPU torch fails here)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return (f"LPIPS needs torchvision, which cannot be imported here ({reason}): install the torchvision "
                f"build that matches your torch and put {LPIPS_NAMES[net]}'s ImageNet weights "
                f"({LPIPS_WEIGHTS[net]}) in TORCH_HOME/hub/checkpoints.")
    weights = lpips_weights(net)
    if not weights.is_file():
        return (f"LPIPS needs {LPIPS_NAMES[net]}'s ImageNet weights at {weights}, which is missing: copy "
                f"{LPIPS_WEIGHTS[net]} there (TORCH_HOME sets the folder); nothing is downloaded.")
    return None


def lpips(x_hat, x, net: str = "alex"):
    """LPIPS with the AlexNet (``net="alex"``) or VGG16 (``"vgg"``) backbone (torchmetrics'
    port of Zhang et al.'s, with their linear layers; lower is closer), per image.

    Offline only: torchvision must be installed and the backbone's weights must already sit in
    TORCH_HOME/hub/checkpoints; otherwise one sentence says what is missing. Gray images are
    repeated to three channels, and x_hat is clipped to [0, 1], the range LPIPS accepts.
    AlexNet needs images of at least about 32 x 32 pixels (MNIST's 28 x 28 is too small)."""
    missing = lpips_missing(net)
    if missing:
        raise ConfigError(missing)
    from torchmetrics.functional.image import learned_perceptual_image_patch_similarity

    def rgb(v):
        return v.float().expand(-1, 3, -1, -1) if v.shape[1] == 1 else v.float()

    return learned_perceptual_image_patch_similarity(rgb(x_hat.clamp(0, 1)), rgb(x), net_type=net,
                                                     reduction="none", normalize=True).double()


def ssim_uniform(x_hat, x):
    """scikit-image's SSIM as the QCS-SGM code called it: a 7 x 7 uniform window, sample
    covariances, data range 1, the mean over the window positions inside the image, averaged
    over the channels; per image, in float64."""
    from skimage.metrics import structural_similarity

    return torch.tensor([structural_similarity(a.numpy(), b.numpy(), data_range=1.0, channel_axis=0)
                         for a, b in zip(x_hat.double(), x.double())], dtype=torch.float64)


def eight_bit(x):
    """The image as an 8-bit PNG holds it: clipped to [0, 1], rounded to a multiple of 1/255 (in
    float64, so k / 255 is exact to the metrics' precision)."""
    return (x.clamp(0, 1) * 255).round().double() / 255


SSIM = {"gaussian11": ssim, "uniform7": ssim_uniform}
ALL_NAMES = (*NAMES, "lpips")  # every metric a profile can report


@settings("metrics", ssim=choice(*SSIM), pixels=choice("float", "8bit"), clip=boolean(),
          lpips=choice(*LPIPS_WEIGHTS, null=True))
class Profile:
    """How the metrics are defined (docs/math.md §7): ``ssim`` (``gaussian11``: torchmetrics,
    ``uniform7``: scikit-image's 7 x 7 uniform window), ``pixels`` (``float``, or ``8bit``: both
    images rounded as a PNG stores them), ``clip`` (the recovery clipped to [0, 1] first) and
    ``lpips`` (null, ``alex`` or ``vgg``: the backbone). LPIPS is optional: where torchvision or the
    backbone's weights are missing, it is left out with a warning that names the file, and
    ``describe()`` records why."""

    def __init__(self, name: str = "default", ssim: str = "gaussian11", pixels: str = "float", clip: bool = False,
                 lpips: str | None = None):
        self.name, self.ssim, self.pixels, self.clip, self.lpips = name, ssim, pixels, bool(clip), lpips
        self.lpips_missing = lpips_missing(lpips) if lpips else None
        if self.lpips_missing:
            log.warning("metrics=%s: LPIPS is left out of this run. %s", name, self.lpips_missing)
        self.names = NAMES + (("lpips",) if lpips and not self.lpips_missing else ())

    def evaluate(self, x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every metric of the profile per image, as float64 tensors of shape (B,), on the CPU."""
        x_hat, x = x_hat.detach().cpu(), x.detach().cpu()
        if self.clip:
            x_hat = x_hat.clamp(0, 1)
        if self.pixels == "8bit":
            x_hat, x = eight_bit(x_hat), eight_bit(x)
        fns = dict(psnr=psnr, ssim=SSIM[self.ssim], nmse=nmse, cosine=cosine, psnr_scaled=psnr_scaled)
        out = {name: fns[name](x_hat, x).double() for name in NAMES}
        if "lpips" in self.names:  # a diverged image (NaN) is outside LPIPS's range: left NaN
            finite = torch.isfinite(x_hat).flatten(1).all(1)
            out["lpips"] = torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
            if finite.any():
                out["lpips"][finite] = lpips(x_hat[finite], x[finite], self.lpips)
        return out

    def describe(self) -> dict:
        """The profile as metrics.json records it: its settings, the LPIPS backbone's weights and
        the versions of the packages that compute it."""
        packages = {"torchmetrics": _version("torchmetrics")}
        if self.ssim == "uniform7":
            packages["scikit-image"] = _version("scikit-image")
        if "lpips" in self.names:
            packages["torchvision"] = _version("torchvision")
        out = dict(name=self.name, ssim=self.ssim, pixels=self.pixels, clip=self.clip,
                   lpips_backbone=LPIPS_WEIGHTS[self.lpips] if "lpips" in self.names else None, packages=packages)
        if self.lpips_missing:
            out["lpips_missing"] = self.lpips_missing
        return out


def is_default(node) -> bool:
    """Whether a metrics config node defines today's default numbers (its name aside): every
    setting at Profile's own default."""
    defaults = {key: p.default for key, p in inspect.signature(Profile.__init__).parameters.items()
                if key not in ("self", "name")}
    return all((node or {}).get(key, value) == value for key, value in defaults.items())


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def evaluate(x_hat: torch.Tensor, x: torch.Tensor, profile: Profile | None = None) -> dict[str, torch.Tensor]:
    """Every metric per image (the default profile unless another is given), as float64 tensors
    of shape (B,), on the CPU."""
    return (profile or Profile()).evaluate(x_hat, x)
