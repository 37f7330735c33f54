"""What a component's settings may hold, declared once beside its constructor.

A channel, operator, prior, method, dataset, learner or logger declares its settings with

    @settings("method", zeta=number(0, 1), progress=boolean())
    class MyMethod(Method): ...

(a factory function is decorated the same way). The one declaration is read twice:
``qcsbench.validate`` imports the class a config node names and checks the node against
``MyMethod.settings`` before anything is built, and calling ``MyMethod(...)`` checks the
arguments it is given, so a Python user meets the same sentence,
``method.zeta=2 is not allowed: use a finite number >= 0 and <= 1.``. Rules look at one value;
``checks`` look at several values of the same node (a ladder that must descend). A subclass
inherits its base's declaration and adds to it.
"""
from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Sequence

from qcsbench.errors import ConfigError


class Rule:
    """What one knob may hold: ``test(value) -> bool`` and the words for the allowed values."""

    def __init__(self, test, allowed: str, null: bool = False):
        self.test, self.null = test, null
        self.allowed = allowed + (" or null" if null else "")

    def ok(self, value) -> bool:
        return (self.null and value is None) or (value is not None and self.test(value))

    def check(self, key: str, value) -> None:
        """Stop with one sentence naming ``key`` when ``value`` is not allowed."""
        if not self.ok(value):
            raise ConfigError(f"{key}={shown(value)} is not allowed: use {self.allowed}.")


class Check(Rule):
    """A rule that says its own sentences: ``check(key, value)`` raises a ConfigError (a file
    that must exist and read like its format, a folder that must hold a model)."""

    def __init__(self, check):
        super().__init__(None, "")
        self.check = check


def shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and abs(v) < float("inf")


def integer(lo=None, hi=None, null=False) -> Rule:
    if hi is not None:
        words = f"an integer from {lo} to {hi}"
    elif lo == 0:
        words = "a non-negative integer"
    elif lo == 1:
        words = "a positive integer"
    else:
        words = f"an integer >= {lo}"
    return Rule(lambda v: _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi), words, null)


def number(lo=None, hi=None, lo_open=False, hi_open=False, null=False) -> Rule:
    """A finite number in a range (open or closed at each end)."""
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    words = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def test(v):
        if not _is_number(v):
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return hi is None or (v < hi if hi_open else v <= hi)
    return Rule(test, words, null)


def boolean(null=False) -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false", null)


def choice(*options, null=False) -> Rule:
    return Rule(lambda v: not isinstance(v, bool) and v in options,
                "one of " + ", ".join(str(o) for o in options), null)


def text(null=False) -> Rule:
    return Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string", null)


def text_list() -> Rule:
    # a Sequence: a constructor built by Hydra is handed OmegaConf's ListConfig, not a list
    return Rule(lambda v: isinstance(v, Sequence) and not isinstance(v, str) and all(isinstance(t, str) for t in v),
                "a list of strings, e.g. [a,b]")


SEED32, SEED64 = 2**32 - 1, 2**64 - 1  # what scikit-learn's random_state and torch.manual_seed take
SIGMA = number(0, lo_open=True, null=True)


def descending_ladder(group: str, values: dict) -> None:
    """sigma_max above sigma_min where both are given (either may be left to the model)."""
    hi, lo = values.get("sigma_max"), values.get("sigma_min")
    if hi is not None and lo is not None and not hi > lo:
        raise ConfigError(f"{group}.sigma_max={hi} is not allowed with {group}.sigma_min={lo}: "
                          "use sigma_max > sigma_min (the ladder descends).")


# A noise ladder's settings (a prior's own, or a method's override of the prior's): declare
# ``**LADDER`` and ``checks=(descending_ladder,)``.
LADDER = dict(sigma_max=SIGMA, sigma_min=SIGMA, num_levels=integer(1, null=True))


class Settings:
    """A component's declared settings: ``rules`` (key -> Rule), ``checks`` (functions of
    (group, values) for rules across keys) and, as ``declared`` reads them, ``keys``: every
    keyword its constructor takes (None where it takes any, through ``**kwargs``)."""

    def __init__(self, group: str, rules: dict, checks=(), keys=None):
        self.group, self.rules, self.checks, self.keys = group, dict(rules), tuple(checks), keys

    def check(self, values: dict) -> None:
        """Check the given values (a config node, or a constructor's arguments) key by key,
        then the files and folders they name, then across keys; the first that cannot work
        stops with one sentence."""
        given = [(key, value, self.rules[key]) for key, value in values.items() if key in self.rules]
        for key, value, rule in sorted(given, key=lambda item: isinstance(item[2], Check)):
            rule.check(f"{self.group}.{key}", value)
        for check in self.checks:
            check(self.group, values)


def constructor_keys(obj) -> set[str] | None:
    """The keyword arguments a class or function takes (None: any, through ``**kwargs``)."""
    fns = [c.__dict__["__init__"] for c in obj.__mro__ if "__init__" in c.__dict__] if inspect.isclass(obj) else [obj]
    found = set()
    for fn in fns:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            continue
        found |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return found
    return None


def settings(group: str, checks=(), /, **rules):
    """Declare the settings of the class or factory function it decorates (see the module's
    docstring): attaches ``.settings`` and checks the arguments of every call."""
    def declare(obj):
        inherited = getattr(obj, "settings", None) or Settings(group, {})
        declared = Settings(group, {**inherited.rules, **rules}, inherited.checks + tuple(checks))
        target = obj.__init__ if inspect.isclass(obj) else obj
        signature = inspect.signature(target)

        @functools.wraps(target)
        def checked(*args, **kwargs):
            given = signature.bind_partial(*args, **kwargs).arguments
            given.pop("self", None)
            for name, param in signature.parameters.items():  # a **kwargs part is checked where it is read
                if param.kind == param.VAR_KEYWORD:
                    given.pop(name, None)
            declared.check(given)
            return target(*args, **kwargs)

        checked.settings = declared
        if not inspect.isclass(obj):
            return checked
        obj.__init__, obj.settings = checked, declared
        return obj
    return declare


def declared(obj, group: str, node: dict) -> Settings:
    """The settings the component ``obj`` declares for the config node of ``group``, with the
    keys it takes: ``settings_for(node)`` where they depend on the node (a method with a pluggable
    likelihood), else ``settings`` (none for a component that declares nothing)."""
    if hasattr(obj, "settings_for"):
        return obj.settings_for(node)
    found = getattr(obj, "settings", None)
    found = found if isinstance(found, Settings) else Settings(group, {})
    return Settings(found.group, found.rules, found.checks, constructor_keys(obj))
