"""Counting what a sampler step asks of the framework: aten operations and host synchronisations.

On a GPU every eager aten operation is a kernel launch (a few microseconds of host time each),
and every read of a device value by the host (``float(t)``, ``t.item()``, ``bool(t)``, a blocking
copy between the CPU and the device either way, an operation whose output shape depends on the
data, such as ``nonzero``) waits for the device to finish everything queued before it. Both are counted here by intercepting the aten
calls (a ``TorchDispatchMode``), so they can be counted on the CPU, where they cost nothing and
would otherwise go unnoticed (``scripts/benchmark.py``, ``tests/test_host_syncs.py``).

    counter = OpCounter()
    with counter:
        with counter.paused():      # e.g. around the score network's forward
            ...
    counter.ops, counter.float64_ops, counter.syncs
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Reads of a device value by the host, and operations whose output shape depends on the data
# (the host must learn the size before it can allocate the result).
SYNC_OPS = {aten._local_scalar_dense, aten.item, aten.is_nonzero, aten.equal, aten.nonzero, aten.nonzero_static,
            aten.masked_select, aten._unique2, aten.unique_consecutive, aten.unique_dim, aten.bincount,
            aten.repeat_interleave, aten.argwhere}
COPIES = {aten._to_copy, aten.copy_}


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _tensors(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _tensors(item)


def _crosses_host(func, args, kwargs, out) -> bool:
    """A blocking copy between host memory and an accelerator, either way: PyTorch waits for the
    stream after it (a copy to the device from ordinary host memory included)."""
    if func.overloadpacket not in COPIES or kwargs.get("non_blocking") or (len(args) > 2 and args[2]):
        return False
    if func.overloadpacket is aten.copy_:
        dst, src = args[0], args[1]
    else:
        src, dst = args[0], out
    return (isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor) and src.device != dst.device
            and "cpu" in (src.device.type, dst.device.type))


class OpCounter(TorchDispatchMode):
    """ops: every aten call but views (a view launches no kernel); float64_ops: those with a float64
    input or output; syncs: the host synchronisations among them. Calls inside ``paused()`` are
    not counted."""

    def __init__(self):
        super().__init__()
        self.ops = self.float64_ops = self.syncs = 0
        self.sync_names: dict[str, int] = {}
        self._paused = 0

    @contextlib.contextmanager
    def paused(self):
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def reset(self) -> None:
        self.ops = self.float64_ops = self.syncs = 0
        self.sync_names = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._paused or func.is_view:
            return out
        self.ops += 1
        if any(t.dtype == torch.float64 for t in (*_tensors(args), *_tensors(kwargs), *_tensors(out))):
            self.float64_ops += 1
        if func.overloadpacket in SYNC_OPS or _crosses_host(func, args, kwargs, out):
            self.syncs += 1
            name = str(func.overloadpacket.__name__)
            self.sync_names[name] = self.sync_names.get(name, 0) + 1
        return out


class PausedPrior:
    """A prior whose score and denoiser calls the counter leaves out (the network's own work),
    and which counts them: one call is one step (one NFE)."""

    def __init__(self, prior, counter: OpCounter):
        self.prior, self.counter, self.calls = prior, counter, 0

    def __getattr__(self, name):
        return getattr(self.prior, name)

    def _paused(self, fn, *args, **kwargs):
        self.calls += 1
        with self.counter.paused():
            return fn(*args, **kwargs)

    def score(self, x, sigma, *args, **kwargs):
        return self._paused(self.prior.score, x, sigma, *args, **kwargs)

    def denoise(self, x, sigma, *args, **kwargs):
        return self._paused(self.prior.denoise, x, sigma, *args, **kwargs)
