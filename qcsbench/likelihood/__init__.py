"""Likelihood scores grad_x log p(y | x_t) at noise level beta_t, and the data term.

Each approximation is one module here with ``knobs(**method_config) -> dict`` (its settings,
named as in the method YAML and declared with ``qcsbench.settings.settings``) and ``build(problem, **knobs) -> score``,
``score(x, beta) -> A^T g`` with ``curvature_bounds(betas)`` (one bound per level, a float64
tensor, computed before the sampler's loop) and optionally ``stats()``. A method config picks one
by module name (``likelihood: diagonal``); a new approximation is a new module.
"""
from __future__ import annotations

import importlib
import pkgutil

from qcsbench.errors import ConfigError

NOT_SCORES = ("data_term",)


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_SCORES)


def load(name: str):
    """The likelihood module called ``name`` (the method config's ``likelihood``)."""
    if name not in names():
        raise ConfigError(f"method.likelihood={name!r} is not allowed: use one of {', '.join(names())}.")
    return importlib.import_module(f"{__name__}.{name}")
