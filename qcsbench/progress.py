"""Progress of the long loops, where a person will look for it.

On a terminal a loop shows a tqdm bar. Anywhere else (a SLURM or submitit job log, a file
the output is sent to, Hydra's ``run.log``) tqdm would print nothing, so the loop writes one
log line each time another ``every`` percent of it is done instead:

    qcs_sgm images 0-15: 40% (93/232 levels), elapsed 18 s, ETA 27 s

The ETA assumes the remaining steps cost what the finished ones did on average.

The runner names what is being computed (``labelled("qcs_sgm images 0-15")``) around a
method's call; the sampler loops inside use that name for their bar and lines, so they need
no argument for it. Outside such a block a loop is named after itself (``langevin``).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time

from tqdm.auto import tqdm

log = logging.getLogger("qcsbench.progress")
EVERY_PERCENT = 10

_label: contextvars.ContextVar[str | None] = contextvars.ContextVar("qcsbench_progress_label", default=None)


@contextlib.contextmanager
def labelled(label: str):
    """Loops run inside this block report as ``label``."""
    token = _label.set(label)
    try:
        yield
    finally:
        _label.reset(token)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def on_terminal() -> bool:
    return sys.stderr.isatty()


class Progress:
    """``done`` of ``total`` ``unit``: a tqdm bar on a terminal (``bar=True``), otherwise a log
    line whenever another ``every`` percent is done (``every=0``: after every update)."""

    def __init__(self, total: int, desc: str, unit: str = "steps", every: float = EVERY_PERCENT, bar: bool = True):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done = 0
        self.started = time.perf_counter()
        self.next_percent = every
        self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", leave=False) if bar and on_terminal() else None

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        eta = elapsed * (self.total - self.done) / max(self.done, 1)
        percent = 100 * self.done / max(self.total, 1)
        return (f"{self.desc}: {percent:.0f}% ({self.done}/{self.total} {self.unit}), "
                f"elapsed {duration(elapsed)}, ETA {duration(eta)}")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        percent = 100 * self.done / max(self.total, 1)
        if self.every <= 0 or percent >= self.next_percent or self.done >= self.total:
            log.info(self.line())
            while 0 < self.every and self.next_percent <= percent:
                self.next_percent += self.every

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def steps(items, name: str, enabled: bool = True):
    """Iterate over ``items`` (a sized sequence), reporting progress as the current label or ``name``."""
    if not enabled:
        yield from items
        return
    tracker = Progress(len(items), _label.get() or name, unit="steps")
    try:
        for item in items:
            yield item
            tracker.update()
    finally:
        tracker.close()
