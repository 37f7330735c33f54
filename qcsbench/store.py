"""Finished per-image results, keyed by everything that determines them.

A result depends on the data, prior, operator, channel, method and seeds, on the code that
computed it, and (thanks to per-image random streams) not on the batch size, the number of
images or where the run folder is. Keying the store by exactly those settings plus a
fingerprint of the code means that re-running a killed sweep, a requeued SLURM job, or the
same experiment with more images recomputes only the images that are missing, and that a
change to the mathematics recomputes everything it touches.

What a path names enters by its contents (qcsbench.fingerprint): the key holds the digest of
every checkpoint file or model folder instead of its path, and each stored image carries the
fingerprint of the test image it was computed from, which the runner checks, with the metrics
row against the stored recovery, before it resumes the image.

Each record is one recovery: sample s of image i (``num_samples``; a sample depends on neither the
number of samples nor the batch, qcsbench/randomness.py), so ``num_samples`` is no key either, and a
run with more samples resumes the ones a run with fewer computed.

Layout: <root>/<settings id>-<code version>/key.json, images/<index>.pt (sample 0) and
images/<index>-<sample>.pt (the others), .lock.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
from pathlib import Path

import torch

import qcsbench
from qcsbench import files, metrics, resolvers
from qcsbench.result_keys import without_non_results

log = logging.getLogger(__name__)

# flock's answers on a file system that has no locks (Lustre without -o flock, some NFS mounts).
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
# Modules that cannot change a number: they write files and W&B runs, read sweep folders,
# or reject configurations; the training loops write model files, which are hashed themselves
# (method.weights). Editing them keeps the stored results valid. A name ending in / stands for
# every file in that folder.
NOT_NUMERIC = {"aggregation/", "training/", "tracking.py", "files.py", "fingerprint.py", "resolvers.py", "validate.py",
               "settings.py", "device.py", "errors.py", "store.py", "result_keys.py", "progress.py", "cli.py",
               "calibration.py", "exact_posterior.py", "spread.py"}


def source_fingerprint(package_dir) -> str:
    """A fingerprint of the code that computes a result: the package's own source files
    (sorted by path, those in NOT_NUMERIC left out), the shipped weights, and torch's version."""
    root = Path(package_dir)
    h = hashlib.sha256(f"torch {torch.__version__}".encode())
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".pt") and p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in NOT_NUMERIC or rel.split("/")[0] + "/" in NOT_NUMERIC or "__pycache__" in rel:
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """The fingerprint of the qcsbench package this process runs (hashed once per process)."""
    return source_fingerprint(Path(qcsbench.__file__).parent)


# The stored records' layout: 2 = each record holds ``image``, the fingerprint of its test image.
RECORDS = 2


def result_key(full: dict, weights: str | None = None, inputs: dict | None = None) -> dict:
    """The settings a per-image result depends on, from the resolved config as a dict; ``weights``:
    the digest of a learned method's model file (retrained weights at the same path are new results);
    ``inputs``: {"prior.checkpoint": digest, ...} (fingerprint.inputs), each in place of the path.
    The dataset's root and manifest are no key: each stored image carries its test image's
    fingerprint instead. The metric profile is, unless it is the default (results stored before
    profiles existed keep their keys)."""
    key = without_non_results(full)
    if metrics.is_default(key.get("metrics")):
        key.pop("metrics", None)
    if weights is not None:
        key["method"]["weights"] = weights
        key["method"].pop("checkpoint", None)
    key.get("dataset", {}).pop("root", None)
    key.get("dataset", {}).pop("manifest", None)
    for dotted, digest in (inputs or {}).items():
        group, name = dotted.split(".", 1)
        key[group][name] = digest
    key["records"] = RECORDS
    if batch_coupled(key):
        key["batch_size"] = full["batch_size"]
    return key


def batch_coupled(key: dict) -> bool:
    """Whether the method or the channel, asked with its settings (``couples_batch``), makes an
    image's result depend on the rest of its batch (QCS-SGM+'s batch-wide step weight, the
    reference quantizer's batch-wide range)."""
    for group in ("method", "quantizer"):
        settings = key.get(group, {})
        component = resolvers.named_class(settings.get("_target_", ""))
        if hasattr(component, "couples_batch") and component.couples_batch(settings):
            return True
    return False


def batches_to_run(num_images: int, batch_size: int, done, coupled: bool, num_samples: int = 1) -> list[list[tuple]]:
    """The batches still to recover, as lists of (image, sample). Independent images: the missing
    recoveries, an image's samples after one another, packed into full batches. Coupled images: every
    batch of the original split of the images, once per sample, that misses any recovery, whole, so a
    resumed result is the one an uninterrupted run would have given (sample s of an image is then
    recovered beside sample s of the same images, whatever num_samples)."""
    if coupled:
        batches = [[(i, s) for i in range(start, min(start + batch_size, num_images))]
                   for start in range(0, num_images, batch_size) for s in range(num_samples)]
        return [b for b in batches if any(u not in done for u in b)]
    todo = [(i, s) for i in range(num_images) for s in range(num_samples) if (i, s) not in done]
    return [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)]


def digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def result_id(key: dict, version: str | None = None) -> str:
    """<settings digest>-<code version>: equal settings share the prefix across code versions."""
    return f"{digest(key)}-{version or code_version()}"


class ResultStore:
    """One result id's folder: key.json, prior.json (the prior that computed them) and one file per
    finished image, images/<index>.pt.

    Files hold only tensors, numbers, strings and dicts of them (read with weights_only=True,
    so a crafted file cannot run code). A file that cannot be read is recomputed with a
    warning. ``locked()`` holds an exclusive lock on the folder, so two processes on one
    store never compute the same image at the same time."""

    def __init__(self, root, key: dict, version: str | None = None):
        self.root = Path(root)
        self.version = version or code_version()
        self.id = result_id(key, self.version)
        self.dir = self.root / self.id
        self.key = dict(key, code_version=self.version)

    def path(self, index: int, sample: int = 0) -> Path:
        return self.dir / "images" / (f"{index:06d}.pt" if not sample else f"{index:06d}-{sample}.pt")

    def load(self, units) -> dict[tuple, dict]:
        """The stored records of ``units``, (image, sample) pairs, by unit."""
        found, broken = {}, []
        for index, sample in units:
            path = self.path(index, sample)
            if not path.is_file():
                continue
            try:
                record = torch.load(path, weights_only=True)
                if record.get("index") != index or record.get("sample", 0) != sample:
                    raise ValueError("wrong index")
                found[index, sample] = record
            except Exception:  # truncated, corrupt or foreign: the image is simply computed again
                broken.append(path.name)
        if broken:
            log.warning("%d stored results in %s could not be read (%s); they are recomputed",
                        len(broken), self.dir, ", ".join(broken[:5]) + (" ..." if len(broken) > 5 else ""))
        return found

    def earlier_versions(self) -> dict[str, int]:
        """Other code versions' folders for these settings, with how many images each holds."""
        prefix = self.id.rsplit("-", 1)[0] + "-"
        out = {}
        for folder in sorted(self.root.glob(prefix + "*")) if self.root.is_dir() else []:
            if folder.name != self.id and folder.is_dir():
                out[folder.name.rsplit("-", 1)[1]] = len(list((folder / "images").glob("*.pt")))
        return out

    def remember_prior(self, described: dict) -> None:
        """Keep the built prior's description (its ladder) beside the results: a later run that
        resumes every image builds no prior, and reports this one."""
        if not (self.dir / "prior.json").is_file():
            files.write_json(self.dir / "prior.json", described)

    def remembered_prior(self) -> dict | None:
        """The description ``remember_prior`` kept, or None (none kept, or unreadable)."""
        try:
            described = json.loads((self.dir / "prior.json").read_text())
        except (OSError, ValueError):
            return None
        return described if isinstance(described, dict) else None

    def save(self, record: dict) -> None:
        if not (self.dir / "key.json").is_file():
            files.write_json(self.dir / "key.json", self.key)
        files.save_tensors(self.path(record["index"], record.get("sample", 0)), record)

    @contextlib.contextmanager
    def locked(self):
        """Exclusive use of this result id while it is being computed (released on exit or death).
        On a file system without flock (Lustre mounted without -o flock, some NFS set-ups) the run
        goes on unlocked, with a warning: two runs of the same settings at the same time may then
        compute an image twice, each writing the same record atomically, so nothing is wrong or lost."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("another run is computing result %s; waiting for it to finish (lock %s)",
                            self.id, self.dir / ".lock")
                fcntl.flock(f, fcntl.LOCK_EX)
            except OSError as err:
                if err.errno not in NO_LOCKS:
                    raise
                log.warning("the file system of %s does not support file locks (%s; Lustre needs -o flock): this run "
                            "goes on without the lock, so a simultaneous run of the same settings may compute the "
                            "same images again (each result is still written whole)", self.root,
                            err.strerror or errno.errorcode.get(err.errno, err.errno))
                yield self
                return
            try:
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
