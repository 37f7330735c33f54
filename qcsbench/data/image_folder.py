"""A folder of image files (CelebA, FFHQ, ImageNet, your own), read lazily."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qcsbench.data.base import ROOT, ImageSet, check_split, existing_folder
from qcsbench.errors import ConfigError
from qcsbench.settings import choice, integer, settings

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def has_splits(folder: Path) -> bool:
    return (folder / "train").is_dir() or (folder / "test").is_dir()


def unreadable(path, err) -> ConfigError:
    return ConfigError(f"dataset.root: the image {path} cannot be read ({type(err).__name__}: "
                       f"{str(err).splitlines()[0] if str(err) else 'corrupt'}): replace or delete it.")


@settings("dataset", root=ROOT, image_size=integer(1), center_crop=integer(1, null=True), channels=choice(1, 3))
class ImageFolder(ImageSet):
    """Every image file under ``root/<split>`` (when ``root`` has train/ or test/ subfolders) or,
    for a flat folder, under ``root`` as the test split only, sorted by path; optionally
    center-cropped to ``center_crop`` pixels, then resized to ``image_size`` (NCSNv2's
    CelebA: crop 140, resize 64). A flat folder has no train split: fitting a prior on the
    images it is then tested on would flatter it."""

    has_splits = staticmethod(has_splits)  # the validator asks it whether a prior can be fitted on root/train

    def __init__(self, root, image_size: int, split: str = "test", center_crop: int | None = None,
                 channels: int = 3):
        check_split(split)
        folder = existing_folder(root)
        if has_splits(folder):
            if not (folder / split).is_dir():
                raise ConfigError(f"dataset.root={root} has no {split}/ subfolder: put the {split} images in "
                                  f"{folder / split}.")
            folder = folder / split
        elif split == "train":
            raise ConfigError(f"dataset.root={root} is a flat folder, which serves as the test split only: to fit "
                              "a prior on it, put training images in root/train and test images in root/test.")
        self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not self.files:
            raise ConfigError(f"dataset.root={root} holds no image files ({', '.join(sorted(EXTENSIONS))}).")
        self.image_size = int(image_size)
        self.center_crop = center_crop
        self.mode = {1: "L", 3: "RGB"}[channels]
        self.shape = (channels, self.image_size, self.image_size)
        self.name = f"{Path(str(root)).name}-{split}"

    def check(self, indices) -> None:
        """Every image that will be used can be decoded (PIL's verify reads each file once,
        without decoding the pixels): a corrupt file stops the run before any compute."""
        for index in indices:
            try:
                with Image.open(self.files[index]) as img:
                    img.verify()
            except Exception as err:
                raise unreadable(self.files[index], err) from None

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        try:
            return self._read(self.files[index])
        except ConfigError:
            raise
        except Exception as err:
            raise unreadable(self.files[index], err) from None

    def _read(self, path):
        with Image.open(path) as img:
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
