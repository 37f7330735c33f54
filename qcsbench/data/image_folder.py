"""A folder of image files (CelebA, FFHQ, ImageNet, your own), read lazily."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qcsbench import shipped
from qcsbench.data.base import ROOT, ImageSet, check_split, existing_folder
from qcsbench.errors import ConfigError
from qcsbench.settings import Check, choice, integer, settings

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MANIFESTS = shipped("manifests")  # the test-image lists the presets name


def manifest_file(value, key: str = "dataset.manifest") -> Path:
    """The manifest ``value`` names: a file, else a shipped manifest by name (ffhq_holdout_1000)."""
    for path in (Path(str(value)).expanduser(), MANIFESTS / f"{value}.txt", MANIFESTS / str(value)):
        if path.is_file():
            return path
    shipped = ", ".join(sorted(p.stem for p in MANIFESTS.glob("*.txt")))
    raise ConfigError(f"{key}={value} is neither a file nor a shipped manifest: give a file of image file names, "
                      f"one a line, or one of {shipped}.")


MANIFEST = Check(lambda key, value: value is None or manifest_file(value, key))


def listed(files: list[Path], folder: Path, manifest) -> tuple[list[Path], dict[int, str]]:
    """The files the manifest names, in its order, and {position: name} of those that are not
    there (a run stops on them when it would use one, ``ImageFolder.check``). A name is a path
    under ``folder`` or, without a folder part, a file name found once anywhere under it
    (FFHQ's 00000.png flat or in FFHQ's own 00000/)."""
    path = manifest_file(manifest)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not names:
        raise ConfigError(f"dataset.manifest={manifest} ({path}) lists no image files: give one file name a line.")
    by_path = {f.relative_to(folder).as_posix(): f for f in files}
    by_name = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    chosen, missing = [], {}
    for i, name in enumerate(names):
        found = by_path.get(name) or (by_name[name][0] if len(by_name.get(name, [])) == 1 else None)
        chosen.append(found or folder / name)
        if found is None:
            missing[i] = name
    return chosen, missing


def has_splits(folder: Path) -> bool:
    return (folder / "train").is_dir() or (folder / "test").is_dir()


def unreadable(path, err) -> ConfigError:
    return ConfigError(f"dataset.root: the image {path} cannot be read ({type(err).__name__}: "
                       f"{str(err).splitlines()[0] if str(err) else 'corrupt'}): replace or delete it.")


@settings("dataset", root=ROOT, image_size=integer(1), center_crop=integer(1, null=True), channels=choice(1, 3),
          manifest=MANIFEST)
class ImageFolder(ImageSet):
    """Every image file under ``root/<split>`` (when ``root`` has train/ or test/ subfolders) or,
    for a flat folder, under ``root`` as the test split only, sorted by path, or, with a
    ``manifest`` (a file of file names, one a line), the test images it lists in its order; optionally
    center-cropped to ``center_crop`` pixels, then resized to ``image_size`` (NCSNv2's
    CelebA: crop 140, resize 64). A flat folder has no train split: fitting a prior on the
    images it is then tested on would flatter it."""

    has_splits = staticmethod(has_splits)  # the validator asks it whether a prior can be fitted on root/train

    def __init__(self, root, image_size: int, split: str = "test", center_crop: int | None = None,
                 channels: int = 3, manifest: str | None = None):
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
        self.manifest, self.missing = manifest, {}
        if manifest is not None and split == "test":  # the train split (a fitted prior's) stays whole
            self.files, self.missing = listed(self.files, folder, manifest)
        self.folder = folder
        self.image_size = int(image_size)
        self.center_crop = center_crop
        self.mode = {1: "L", 3: "RGB"}[channels]
        self.shape = (channels, self.image_size, self.image_size)
        self.name = f"{Path(str(root)).name}-{split}"

    def check(self, indices) -> None:
        """Every image that will be used is there (a file the manifest lists and the folder does not
        hold stops the run) and can be decoded (PIL's verify reads each file once, without decoding
        the pixels): a missing or corrupt file stops the run before any compute."""
        absent = [self.missing[i] for i in indices if i in self.missing]
        if absent:
            raise ConfigError(f"dataset.manifest={self.manifest} lists {len(absent)} image file(s) this run uses that "
                              f"{self.folder} does not hold (the first: {absent[0]}): put them there, or set "
                              "dataset.manifest=null to use every image in the folder.")
        for index in indices:
            try:
                with Image.open(self.files[index]) as img:
                    img.verify()
            except Exception as err:
                raise unreadable(self.files[index], err) from None

    def __len__(self):
        return len(self.files)

    def source(self, index: int) -> str:
        return self.files[index].relative_to(self.folder).as_posix()

    def __getitem__(self, index):
        if index in self.missing:
            self.check([index])
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
