"""A folder of image files (CelebA, FFHQ, ImageNet, your own), read lazily."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qcsbench.data.base import ImageSet, check_split, existing_folder
from qcsbench.errors import ConfigError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class ImageFolder(ImageSet):
    """Every image file under ``root`` (or under ``root/<split>`` when that subfolder exists),
    sorted by path; optionally center-cropped to ``center_crop`` pixels, then resized to
    ``image_size`` (NCSNv2's CelebA: crop 140, resize 64)."""

    def __init__(self, root, image_size: int, split: str = "test", center_crop: int | None = None,
                 channels: int = 3):
        check_split(split)
        folder = existing_folder(root)
        if (folder / split).is_dir():
            folder = folder / split
        self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not self.files:
            raise ConfigError(f"dataset.root={root} holds no image files ({', '.join(sorted(EXTENSIONS))}).")
        self.image_size = int(image_size)
        self.center_crop = center_crop
        self.mode = {1: "L", 3: "RGB"}.get(channels)
        if self.mode is None:
            raise ConfigError(f"dataset.channels={channels} is not allowed: use 1 or 3.")
        self.shape = (channels, self.image_size, self.image_size)
        self.name = f"{Path(str(root)).name}-{split}"

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        with Image.open(self.files[index]) as img:
            img = img.convert(self.mode)
            if self.center_crop:
                w, h = img.size
                c = int(self.center_crop)
                left, top = (w - c) // 2, (h - c) // 2
                img = img.crop((left, top, left + c, top + c))
            if img.size != (self.image_size, self.image_size):
                img = img.resize((self.image_size, self.image_size), Image.BICUBIC)
            arr = np.asarray(img, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(arr.copy()).float() / 255.0
