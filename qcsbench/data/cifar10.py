"""CIFAR-10 from the python-pickle batches (data_batch_1..5, test_batch) in a folder."""
from __future__ import annotations

import pickle

import numpy as np
import torch

from qcsbench.data.base import ROOT, TensorImageSet, check_split, existing_folder
from qcsbench.errors import ConfigError
from qcsbench.settings import settings

# What a CIFAR-10 batch legitimately holds; anything else (a class that runs code on loading) is refused.
ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
           ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
           ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
           ("numpy._core.numeric", "_frombuffer"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "str"),
           ("builtins", "bytes"), ("builtins", "int"), ("_codecs", "encode")}


class BatchUnpickler(pickle.Unpickler):
    """Plain data only: numpy arrays, lists, dicts, strings, bytes and numbers."""

    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR-10 batch never holds")


def read_batch(path) -> dict:
    hint = "download cifar-10-python.tar.gz again and unpack it there."
    try:
        with open(path, "rb") as f:
            batch = BatchUnpickler(f, encoding="bytes").load()
        return dict(data=np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    except Exception as err:  # truncated, not a pickle, not a batch, or a crafted file
        raise ConfigError(f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else 'corrupt'}): {hint}") from None


BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


@settings("dataset", root=ROOT)
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
        arrays.append(read_batch(path)["data"])
    return TensorImageSet(torch.from_numpy(np.concatenate(arrays)), f"cifar10-{split}")
