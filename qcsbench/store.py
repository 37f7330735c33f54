"""Finished per-image results, keyed by everything that determines them.

A result depends on the data, prior, operator, channel, method and seeds, and (thanks to
per-image random streams) not on the batch size, the number of images or where the run
folder is. Keying the store by exactly those settings means that re-running a killed
sweep, a requeued SLURM job, or the same experiment with more images recomputes only
the images that are missing.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from qcsbench import tracking

# Settings that cannot change a result: how it is logged, shown or batched.
IGNORED = {"num_images", "batch_size", "logger", "device", "cache_dir", "results_dir", "resume", "run_dir", "hydra"}


def result_key(cfg) -> dict:
    """The resolved settings a per-image result depends on."""
    full = OmegaConf.to_container(cfg, resolve=True)
    key = {k: v for k, v in full.items() if k not in IGNORED}
    key.get("method", {}).pop("progress", None)
    key.get("prior", {}).pop("cache_dir", None)
    batch_coupled = (key.get("quantizer", {}).get("range") == "batch"
                     or key.get("method", {}).get("weighting") == "norm_ratio_batch")
    if batch_coupled:  # the reference behaviours couple the images of a batch
        key["batch_size"] = full["batch_size"]
    return key


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
