"""The eigendecomposition of A A^T kept on disk, so that a sweep over methods and seeds computes
it once per operator (an O(M^3) eigendecomposition: minutes at M = 4,000).

A file is named by a hash of its key (the operator's description, image shape and dtype) and
records the key itself; the loader compares the two, so a file that does not match, or cannot be
read, is computed again and replaced, never trusted. Written atomically (qcsbench/files.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from qcsbench.files import save_tensors

log = logging.getLogger(__name__)

# Bump when an operator's draw, the eigensolver or this file's layout changes: older files then no
# longer match (2: scipy's divide and conquer instead of torch.linalg.eigh, equal to rounding; 3: float32
# for well-conditioned float32 operators with M >= 2048, base.FLOAT32_EIG_MIN_M).
FORMAT = 3


def cache_path(cache_dir, key: dict) -> Path:
    text = json.dumps(dict(key, format=FORMAT), sort_keys=True)
    return Path(cache_dir).expanduser() / f"gram-eig-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"


def load(path: Path, key: dict):
    """(d, U) from ``path`` if it holds the eigendecomposition for ``key``, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True)
        if state["key"] != json.dumps(dict(key, format=FORMAT), sort_keys=True):
            log.warning("the cached eigendecomposition %s belongs to another operator; computing it again", path)
            return None
        d, u = state["d"], state["u"]
        m = key["operator"]["m"]
        if d.shape != (m,) or (u is not None and u.shape != (m, m)):
            raise ValueError("shape")
        return d, u
    except Exception as err:  # truncated, corrupt or forged: compute again and replace it
        log.warning("the cached eigendecomposition %s cannot be read (%s); computing it again", path,
                    type(err).__name__)
        return None


def load_or_compute(cache_dir, key: dict, compute, device=None, dtype=None):
    """(d, U) for the operator described by ``key``: read from ``cache_dir`` or computed by
    ``compute()`` (and then written there); moved to ``device`` and ``dtype``."""
    path = None if cache_dir is None else cache_path(cache_dir, key)
    found = None if path is None else load(path, key)
    if found is None:
        found = compute()
        if path is not None:
            try:
                save_tensors(path, dict(d=found[0].cpu(), u=None if found[1] is None else found[1].cpu(),
                                        key=json.dumps(dict(key, format=FORMAT), sort_keys=True)))
            except OSError as err:  # a full disk or a read-only cache costs the next run a recompute
                log.warning("could not cache the eigendecomposition of A A^T in %s (%s)", path,
                            err.strerror or err)
    else:
        log.info("loaded the eigendecomposition of A A^T from %s", path)
    return tuple(None if t is None else t.to(device=device, dtype=dtype) for t in found)
