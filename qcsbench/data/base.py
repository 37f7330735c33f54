"""Datasets hand out images as float tensors in [0, 1] of shape (C, H, W)."""
from __future__ import annotations

from pathlib import Path

import torch

from qcsbench.errors import ConfigError
from qcsbench.settings import Check

SPLITS = ("train", "test")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"dataset.split={split!r} is not allowed: use one of {', '.join(SPLITS)}.")
    return split


def existing_folder(root, key: str = "dataset.root") -> Path:
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{key}={root} is not an existing folder: point it at the folder that holds the data.")
    return path


ROOT = Check(lambda key, value: existing_folder(value, key))  # a dataset's root setting


class ImageSet:
    """A split of a dataset: ``len``, ``[i]`` -> (C, H, W) in [0, 1], ``batch(indices)``."""

    name = "images"
    shape: tuple

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def batch(self, indices) -> torch.Tensor:
        return torch.stack([self[int(i)] for i in indices])

    def source(self, index: int) -> str:
        """Where image ``index`` comes from, as a run records it (test_images.txt): a folder's file
        name, else the split's name and the index."""
        return f"{self.name}:{index}"

    def check(self, indices) -> None:
        """Stop with a ConfigError naming the file if any of these images cannot be read
        (a set held in memory was read whole when it was loaded)."""


class TensorImageSet(ImageSet):
    """A split held in memory as one uint8 or float tensor (N, C, H, W)."""

    def __init__(self, images: torch.Tensor, name: str):
        self.images = images
        self.name = name
        self.shape = tuple(images.shape[1:])

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        img = self.images[index]
        return img.float() / 255.0 if img.dtype == torch.uint8 else img.float()

    def batch(self, indices):
        imgs = self.images[torch.as_tensor(list(indices), dtype=torch.long)]
        return imgs.float() / 255.0 if imgs.dtype == torch.uint8 else imgs.float()
