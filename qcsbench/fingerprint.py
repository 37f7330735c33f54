"""Content digests of what a result is computed from, for the result store (docs/architecture.md §6).

A path says where data is, not what it holds: images replaced in a folder, or a checkpoint
overwritten in place, would otherwise be scored as the old ones. So the store keys a result by
the contents: every stored image record carries a fingerprint of the decoded test image it was
computed from (``image``), checked when it is resumed, and the result key holds a digest of
every checkpoint file the run reads (``inputs``) in place of its path. A run's metrics.json
records the fingerprint of all its test images with their file names (``test_images``), which
the aggregation compares before it averages runs together.

Hashing a multi-GB checkpoint takes seconds, so a file's digest is kept in
<cache_dir>/digests.json under its resolved path, size and modification time, and hashed again
only when one of those changes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from qcsbench import files

log = logging.getLogger(__name__)

# The config keys that name a file or folder whose contents determine the numbers.
PRIOR_FILES = ("checkpoint", "path")


def image(x: torch.Tensor) -> str:
    """The fingerprint of one decoded test image (C, H, W): SHA-256 of its float32 values and shape."""
    values = x.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(repr(tuple(values.shape)).encode())
    h.update(values.numpy().tobytes())
    return h.hexdigest()[:16]


def test_images(sources: list[str], images: list[str]) -> str:
    """The fingerprint of the test images a run evaluated, in order: SHA-256 over each image's
    source (its file under the dataset's folder) and the fingerprint of its decoded values
    (``image``). One value per image, so it does not depend on how the images were batched."""
    h = hashlib.sha256()
    for source, digest in zip(sources, images, strict=True):
        h.update(source.encode() + b"\0" + digest.encode() + b"\0")
    return h.hexdigest()[:16]


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in blocks (hashlib.file_digest needs Python 3.11; we support 3.10)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class DigestCache:
    """SHA-256 of files, remembered by (resolved path, size, mtime) in a JSON file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            known = json.loads(path.read_text())
            self.known = known if isinstance(known, dict) else {}
        except (OSError, ValueError):  # none yet, or damaged: every digest is computed again
            self.known = {}
        self.changed = False

    def file(self, path: Path) -> str:
        where = str(path.resolve())
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = self.known.get(where)
        if isinstance(entry, list) and entry[:2] == stamp and isinstance(entry[-1], str):
            return entry[-1]
        digest = sha256_of(path)
        self.known[where] = [*stamp, digest]
        self.changed = True
        return digest

    def files(self, paths) -> str:
        """One digest of several files, each by its name and contents (in the order given)."""
        h = hashlib.sha256()
        for path in paths:
            h.update(path.name.encode() + b"\0" + self.file(path).encode() + b"\0")
        return h.hexdigest()

    def folder(self, path: Path) -> str:
        """Every file under a folder (links followed), by relative path and contents."""
        h = hashlib.sha256()
        for root, dirs, names in os.walk(path, followlinks=True):
            dirs.sort()
            for name in sorted(names):
                file = Path(root) / name
                if file.is_file():
                    h.update(file.relative_to(path).as_posix().encode() + b"\0" + self.file(file).encode() + b"\0")
        return h.hexdigest()

    def save(self) -> None:
        if self.changed:
            try:
                files.write_json(self.path, self.known)
            except OSError as err:  # a read-only cache costs the next run the hashing, nothing else
                log.warning("could not record file digests in %s (%s)", self.path, err.strerror or err)


def prior_files(prior: dict, name: str) -> list[Path]:
    """The files a prior reads through its ``checkpoint`` (that file) or ``path`` (a diffusers
    folder or a model id in the local Hugging Face cache: the files diffusers_models reads);
    none where the key is unset or names no file (building the prior then says so)."""
    value = prior.get(name)
    if value in (None, ""):
        return []
    if name == "path":
        from qcsbench.priors.diffusers_models import model_files

        return model_files(value)
    path = Path(str(value)).expanduser()
    return [path] if path.is_file() else []


def inputs(config: dict, needs_prior: bool = True) -> dict[str, str]:
    """{"prior.checkpoint": digest, ...}: the contents of every file the run's numbers come from,
    by the config key that names it. The dataset's files enter only where the prior is fitted on
    them (root/train, else the whole root); the test images are fingerprinted one by one (``image``)."""
    cache = DigestCache(Path(str(config.get("cache_dir", "~/.cache/qcsbench"))).expanduser() / "digests.json")
    out = {}
    prior, dataset = config.get("prior") or {}, config.get("dataset") or {}
    if needs_prior:
        for name in PRIOR_FILES:
            paths = prior_files(prior, name)
            if paths:  # a checkpoint by its contents alone, a model folder's files by their role (name)
                digest = cache.file(paths[0]) if name == "checkpoint" else cache.files(paths)
                out[f"prior.{name}"] = "sha256:" + digest
        root = dataset.get("root")
        if "train" in prior and root not in (None, "") and Path(str(root)).expanduser().is_dir():
            root = Path(str(root)).expanduser()  # its train/ subfolder where it has one (an image folder)
            out["dataset.root"] = "sha256:" + cache.folder(root / "train" if (root / "train").is_dir() else root)
    cache.save()
    return out
