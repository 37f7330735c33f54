"""grid.png: a diverged recovery is framed in red and its NaN pixels are grey, not black."""
import pytest
import numpy as np
import torch
from PIL import Image

from qcsbench import tracking

pytestmark = pytest.mark.fast


def red_mask(arr):
    return (arr[..., 0] > 200) & (arr[..., 1] < 60) & (arr[..., 2] < 60)


def test_a_diverged_recovery_is_framed_in_red_with_grey_nan_pixels(tmp_path):
    truth = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    recon = truth.clone()
    recon[2] = float("nan")
    scale = 2
    path = tracking.save_grid(tmp_path / "grid.png", [truth, truth, recon], scale=scale, diverged=[2])
    arr = np.asarray(Image.open(path).convert("RGB"))
    rows, cols = np.nonzero(red_mask(arr))
    # one frame, one pixel (times the scale) wide around a 6 x 6 tile, in the recovery panel (the right third)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    assert bottom - top + 1 == right - left + 1 == (6 + 2) * scale and left > 2 * arr.shape[1] / 3
    ring = np.zeros(arr.shape[:2], dtype=bool)
    ring[top:bottom + 1, left:right + 1] = True
    ring[top + scale:bottom + 1 - scale, left + scale:right + 1 - scale] = False
    assert np.array_equal(red_mask(arr), ring)
    inside = arr[top + scale:bottom + 1 - scale, left + scale:right + 1 - scale]
    assert (inside == 128).all()  # the NaN image is mid-grey


def test_no_frame_when_nothing_diverged(tmp_path):
    truth = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0)).expand(4, 3, 6, 6)  # colour, no red
    path = tracking.save_grid(tmp_path / "grid.png", [truth, truth, truth])
    assert not red_mask(np.asarray(Image.open(path).convert("RGB"))).any()
