"""LPIPS works offline only with torchvision and AlexNet's weights in TORCH_HOME; otherwise it says so."""
from pathlib import Path

import pytest
import torch

from qcsbench import metrics
from qcsbench.errors import ConfigError

pytestmark = pytest.mark.fast


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or built for another torch
        return False
    return True


HAS_TORCHVISION = _torchvision_imports()
WEIGHTS = Path(torch.hub.get_dir()) / "checkpoints" / metrics.LPIPS_BACKBONE


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision imports here")
def test_lpips_without_torchvision_says_what_is_missing():
    with pytest.raises(ConfigError, match=r"^LPIPS needs torchvision, which cannot be imported here \(.*\): "
                                          r"install the torchvision build that matches your torch"):
        metrics.lpips(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_lpips_without_the_backbone_weights_says_where_they_go(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError, match=rf"^LPIPS needs AlexNet's ImageNet weights at {tmp_path}"):
        metrics.lpips(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


@pytest.mark.skipif(not (HAS_TORCHVISION and WEIGHTS.is_file()), reason="needs torchvision and AlexNet's weights")
def test_lpips_orders_distortions():
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    same, slight, strong = (metrics.lpips(x + s * noise, x) for s in (0.0, 0.02, 0.3))
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2, dtype=torch.float64), atol=1e-6)
    assert (slight < strong).all()
