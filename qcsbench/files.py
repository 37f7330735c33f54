"""Writing files so that a reader never sees a half-written one: every file is written to a
temporary name beside its destination and renamed into place. Used by the run folder
(tracking), the result store and the caches (the fitted GMM, trained priors); and the check,
before any of it, that a folder can be written to."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import torch

from qcsbench.errors import ConfigError

def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> Path:
    """Call ``write(file_path)`` on a temporary file beside ``path``, then rename it over ``path``.
    The file gets the mode an ordinary open() would give (0644 under the usual umask 022):
    mkstemp makes it 0600, which colleagues sharing a results folder could not read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno is not None:  # named by the file meant, not its temporary name
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def save_tensors(path, tensors: dict) -> Path:
    def write(tmp):
        # through a Python file object: a full disk then raises OSError(ENOSPC), which names the file;
        # torch.save on a path raises RuntimeError("basic_ios::clear: iostream error") instead
        with open(tmp, "wb") as f:
            torch.save(tensors, f)
    return atomic_write(path, write)


def writable_folder(key: str, value) -> None:
    """A folder that exists and is writable, or can be created: its nearest existing ancestor
    must be a writable folder. Writing is tried (a nameless temporary file), not inferred from
    permission bits, which say nothing to root nor of a read-only or full file system."""
    if value is None or not str(value).strip():
        raise ConfigError(f"{key}= is empty: give a folder path (it is created if missing).")
    path = Path(str(value)).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={value} is not a folder: use a folder path (it is created if missing).")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={value} cannot be created ({probe} is not a folder): use a folder path.")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise ConfigError(f"{key}={value} is not writable (no file can be created in {probe}: {err.strerror}): "
                          "use a folder you can write to.") from None
