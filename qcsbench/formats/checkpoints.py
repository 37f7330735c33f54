"""Reading checkpoint files with errors a person can act on (one sentence, naming the key)."""
from __future__ import annotations

from pathlib import Path

import torch

from qcsbench.errors import ConfigError
from qcsbench.settings import Check

SHOWN = 5  # key names listed in an error before "and N more"


def _given(path, key: str, hint: str) -> Path:
    """path as a Path; an unset one (null, empty, Hydra's ???) stops with ``hint``."""
    if path is None or str(path) in ("", "None", "null", "???"):
        raise ConfigError(f"{key} is not set: {hint}")
    return Path(str(path)).expanduser()


def existing_file(path, key: str) -> Path:
    file = _given(path, key, f"give the path of the checkpoint file, e.g. {key}=/path/to/model.pt.")
    if not file.is_file():
        raise ConfigError(f"{key}={path} is not an existing file: give the path of the checkpoint file.")
    return file


def readable(path, key: str) -> Path:
    """An existing, readable file that starts like a torch.save file (zip) or a pickle."""
    file = existing_file(path, key)
    try:
        with open(file, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise ConfigError(f"{key}={path} cannot be read ({err.strerror}): check its permissions.") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise ConfigError(f"{key}={path} is not a PyTorch checkpoint (neither a torch.save zip nor a pickle): "
                          "give the checkpoint file itself.")
    return file


def checkpoint_file(null: bool = False) -> Check:
    """The rule of a setting that names a checkpoint file (null allowed only where ``null``)."""
    return Check(lambda key, value: None if null and value is None else readable(value, key))


def existing_dir(path, key: str) -> Path:
    folder = _given(path, key, "give the folder of the model (the one holding config.json).")
    if not folder.is_dir():
        raise ConfigError(f"{key}={path} is not an existing folder: give the folder that holds the model's config.json.")
    return folder


def first_line(err: Exception) -> str:
    """The first line of an exception's message (at most 200 characters), for a one-sentence error."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def load_file(path, key: str, weights_only: bool = True):
    """torch.load on the CPU; an unreadable file becomes a ConfigError naming ``key``.

    weights_only=True refuses pickled code; the official NCSNv2 files hold only tensors,
    numbers and optimizer dicts, so they load this way too."""
    file = existing_file(path, key)
    try:
        return torch.load(file, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # any failure to unpickle means the file is not a checkpoint we can read
        raise ConfigError(f"{key}={path} could not be read as a PyTorch checkpoint ({first_line(err)}).") from None


def _listed(keys) -> str:
    keys = sorted(keys)
    text = ", ".join(keys[:SHOWN])
    return text + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def load_state(module: torch.nn.Module, state: dict, key: str, what: str) -> None:
    """load_state_dict(strict) whose failure names the missing / unexpected / misshapen keys."""
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ConfigError(f"{key} does not hold a state dict of parameter tensors: it is not a {what} checkpoint.")
    expected = module.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_listed(unexpected)}")
        raise ConfigError(f"{key} is not a checkpoint of the configured {what} ({'; '.join(parts)}): "
                          f"check the prior= option and its architecture settings.")
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise ConfigError(f"{key} does not fit the configured {what}: {len(wrong)} tensors have other shapes "
                          f"(first {k}: {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} expected); "
                          f"check the prior= option and its architecture settings.")
    module.load_state_dict(state, strict=True)
