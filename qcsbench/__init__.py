"""qcsbench: quantized compressed sensing with diffusion / score-based priors."""
from pathlib import Path


def shipped(folder: str) -> Path:
    """A folder of data files shipped with the configs (manifests, published numbers):
    configs/<folder> in the checkout, qcsbench/configs/<folder> where the package is installed."""
    package = Path(__file__).resolve().parent
    return next((c / folder for c in (package / "configs", package.parent / "configs") if (c / folder).is_dir()),
                package.parent / "configs" / folder)
