"""Finished per-image results, keyed by everything that determines them.

A result depends on the data, prior, operator, channel, method and seeds, and (thanks to
per-image random streams) not on the batch size, the number of images or where the run
folder is. Keying the store by exactly those settings means that re-running a killed
sweep, a requeued SLURM job, or the same experiment with more images recomputes only
the images that are missing.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch

from qcsbench import tracking

# Settings that cannot change a result: how it is logged, shown or batched.
IGNORED = {"num_images", "batch_size", "logger", "device", "cache_dir", "results_dir", "resume", "run_dir", "hydra",
           "optimized_metric"}


def result_key(full: dict) -> dict:
    """The settings a per-image result depends on, from the resolved config as a dict."""
    key = copy.deepcopy({k: v for k, v in full.items() if k not in IGNORED})
    key.get("method", {}).pop("progress", None)
    key.get("prior", {}).pop("cache_dir", None)
    if batch_coupled(key):
        key["batch_size"] = full["batch_size"]
    return key


def batch_coupled(key: dict) -> bool:
    """The reference behaviours that make an image's result depend on the rest of its batch."""
    return (key.get("quantizer", {}).get("range") == "batch"
            or key.get("method", {}).get("weighting") == "norm_ratio_batch")


def batches_to_run(num_images: int, batch_size: int, done, coupled: bool) -> list[list[int]]:
    """The batches still to recover. Independent images: the missing ones, packed into full
    batches. Coupled images: every batch of the original split that misses any image, whole,
    so a resumed result is the one an uninterrupted run would have given."""
    if coupled:
        batches = [list(range(s, min(s + batch_size, num_images))) for s in range(0, num_images, batch_size)]
        return [b for b in batches if any(i not in done for i in b)]
    todo = [i for i in range(num_images) if i not in done]
    return [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)]


def digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


class ResultStore:
    """<root>/<digest>/key.json and one file per finished image, images/<index>.pt."""

    def __init__(self, root, key: dict):
        self.id = digest(key)
        self.dir = Path(root) / self.id
        self.key = key

    def load(self, indices) -> dict[int, dict]:
        found = {}
        for index in indices:
            path = self.dir / "images" / f"{index:06d}.pt"
            if path.is_file():
                found[index] = torch.load(path, weights_only=False)
        return found

    def save(self, record: dict) -> None:
        if not (self.dir / "key.json").is_file():
            tracking.write_json(self.dir / "key.json", self.key)
        tracking.save_tensors(self.dir / "images" / f"{record['index']:06d}.pt", record)
