"""The config keys that are not part of a result: one list for the store, the aggregation and run names.

An image's result depends on the data, the prior, the operator, the channel, the method and the
seeds. The keys in ``NOT_RESULT`` only say how a run is shown, where it reads and writes, how it is
computed (per-image random streams make a result independent of the batch), or how many images and
samples of each image it takes (each sample has its own stream, so it does not depend on how many
others are drawn). Each user leaves them out, with one difference each, on purpose:

- the store (``store.result_key``) leaves all of them out of a result's key; the batch size goes
  back in where a method or a channel couples the images of a batch (``couples_batch``);
- the aggregation (``qcsbench.aggregation.runs``) leaves them out of a run's settings except
  ``MEAN_OF``: ``num_images`` and ``num_samples`` change no image's result, but a mean over 4 images
  is not a mean over 16, and the mean of 8 samples is another estimate than one sample, so such
  runs are not averaged together; a run whose config lacks ``num_samples`` (made before it existed)
  has the 1 it ran with (``DEFAULTS``);
- config.yaml's ``hydra.job.config.override_dirname.exclude_keys``, the overrides left out of a
  W&B run's name, lists ``RUN_NAME_EXCLUDED``: the keys below as a command line names them
  (YAML cannot import this module; tests/test_bookkeeping.py checks that the two lists are equal).

Paths whose contents a result is computed from (a checkpoint, ``dataset.root``) are another matter:
they are part of a result, by their contents (the store keys them by digest, qcsbench/fingerprint.py).
So is the code, less the modules that cannot change a number (``store.NOT_NUMERIC``).
"""
from __future__ import annotations

import copy

# A dotted key; a group's name stands for every key in the group.
NOT_RESULT = (
    "logger", "method.progress", "optimized_metric",  # how a run is shown, logged or searched
    "results_dir", "cache_dir", "prior.cache_dir", "run_dir", "hydra",  # where it reads and writes
    "device", "batch_size", "resume",  # how it is computed
    "num_images", "num_samples",  # how many images and samples: each one's result is the same, their mean is not
)
# Part of no image's result, but of a mean over images or samples: the aggregation keeps them as settings.
MEAN_OF = ("num_images", "num_samples")
# Settings added after runs were made without them, at the value those runs had (the aggregation fills them in).
DEFAULTS = {"num_samples": 1}
# The logger's mode is typed on its own (logger.mode=online) and names no result either; Hydra's own
# overrides never enter a run's name.
RUN_NAME_EXCLUDED = tuple(k for k in NOT_RESULT if k != "hydra") + ("logger.mode",)


def covered(key: str, keys=NOT_RESULT) -> bool:
    """Whether the dotted ``key`` is one of ``keys`` or inside one of their groups."""
    return any(key == k or key.startswith(k + ".") for k in keys)


def is_setting(key: str) -> bool:
    """Whether a run's flattened config key says what was run (the aggregation's settings)."""
    return not covered(key, [k for k in NOT_RESULT if k not in MEAN_OF])


def without_non_results(config: dict) -> dict:
    """A deep copy of a resolved config (a dict of dicts) less every key in NOT_RESULT."""
    out = copy.deepcopy({k: v for k, v in config.items() if k not in NOT_RESULT})
    for dotted in NOT_RESULT:
        group, _, name = dotted.partition(".")
        if name and isinstance(out.get(group), dict):
            out[group].pop(name, None)
    return out
