"""The device a run computes on, from the config's ``device``."""
from __future__ import annotations

import os

import torch

from qcsbench.errors import ConfigError


def match_slurm_threads() -> None:
    """In a SLURM task, compute with as many CPU threads as the task was given (cpus_per_task).
    torch otherwise starts one thread per core of the node; tasks sharing a node then oversubscribe
    it, and OpenMP threads waiting on each other make every matrix product many times slower.
    OMP_NUM_THREADS, where the user set it, wins."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(int(cpus))


def resolve_device(name) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; anything else must name a usable device."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={name} is not a device: use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={name} is not supported: use auto, cpu, cuda, cuda:N or mps.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} is not available on this machine (no CUDA): use device=auto or device=cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name} does not exist: this machine has {torch.cuda.device_count()} CUDA devices.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name} is not available on this machine (no Apple GPU): use device=auto or device=cpu.")
    return device
