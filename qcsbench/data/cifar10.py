"""CIFAR-10 from the python-pickle batches (data_batch_1..5, test_batch) in a folder."""
from __future__ import annotations

import pickle

import numpy as np
import torch

from qcsbench.data.base import TensorImageSet, check_split, existing_folder
from qcsbench.errors import ConfigError

BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def cifar10(root, split: str = "test") -> TensorImageSet:
    check_split(split)
    folder = existing_folder(root)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    arrays = []
    for name in BATCHES[split]:
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"dataset.root={root} has no {name}: point it at the cifar-10-batches-py folder.")
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        arrays.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    return TensorImageSet(torch.from_numpy(np.concatenate(arrays)), f"cifar10-{split}")
