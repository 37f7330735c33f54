import math

import pytest
import torch

from qcsbench import metrics

pytestmark = pytest.mark.fast


def test_psnr_is_per_image_with_data_range_one():
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    x_hat = x + torch.tensor([0.01, 0.1, 0.3], dtype=torch.float64).view(3, 1, 1, 1) * torch.randn_like(x)
    mse = ((x_hat - x) ** 2).flatten(1).mean(1)
    assert torch.allclose(metrics.psnr(x_hat, x), -10 * torch.log10(mse))
    # averaging per-image PSNR is not the PSNR of the pooled MSE
    assert abs(float(metrics.psnr(x_hat, x).mean()) + 10 * math.log10(float(mse.mean()))) > 1.0


def test_scale_invariant_metrics():
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    x_hat = x + 0.05 * torch.randn_like(x)
    assert torch.allclose(metrics.cosine(3.0 * x_hat, x), metrics.cosine(x_hat, x))
    assert torch.allclose(metrics.psnr_scaled(0.2 * x_hat, x), metrics.psnr_scaled(x_hat, x))
    assert bool((metrics.psnr_scaled(0.2 * x_hat, x) > metrics.psnr(0.2 * x_hat, x) + 5).all())
    assert torch.allclose(metrics.nmse(x_hat, x), ((x_hat - x) ** 2).flatten(1).sum(1) / (x**2).flatten(1).sum(1))


def test_ssim_of_identical_images_is_one_and_drops_with_noise():
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    assert torch.allclose(metrics.ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert bool((metrics.ssim((x + 0.2 * torch.randn_like(x)).clamp(0, 1), x) < 0.9).all())
    assert set(metrics.evaluate(x, x)) == set(metrics.NAMES)
