"""Where a run's results go: its own folder (always) and Weights & Biases (``logger=wandb``).

Every file is written to a temporary name and renamed into place, so a killed run
never leaves a half-written result.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qcsbench.files import atomic_write
from qcsbench.settings import choice, settings, text, text_list

def finite_or_none(value):
    """A JSON-safe number: NaN and Inf become null, never a number that is not one."""
    value = float(value)
    return value if math.isfinite(value) else None


DIVERGED = (220, 20, 20)  # the frame around a recovery that is NaN or Inf


def tile(images: torch.Tensor, ncol: int, pad: int = 1, marked=()) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> one (rows*H, ncol*W, 3) RGB uint8 array, white gaps between images.
    NaN pixels are mid-grey (black would pass for a dark recovery); the images whose index is
    in ``marked`` get a red frame in the gap around them."""
    b, c, h, w = images.shape
    nrow = math.ceil(b / ncol)
    out = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.float64)
    imgs = images.detach().cpu().double().nan_to_num(0.5).clamp(0, 1).numpy().transpose(0, 2, 3, 1)
    imgs = np.broadcast_to(imgs, (b, h, w, 3)) if c == 1 else imgs
    for i in range(b):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        if i in marked:
            out[top - pad:top + h + pad, left - pad:left + w + pad] = np.array(DIVERGED) / 255
        out[top:top + h, left:left + w] = imgs[i]
    return (out * 255).round().astype(np.uint8)


def minmax(images: torch.Tensor) -> torch.Tensor:
    """Each image stretched to [0, 1], for showing A^T y whose scale is arbitrary."""
    flat = images.reshape(images.shape[0], -1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(images)


def std_map(std: torch.Tensor) -> torch.Tensor:
    """Per-pixel standard deviations (B, C, H, W) as gray images on one scale for all of them (the
    channels' mean, divided by the largest value of the batch), so brighter is more uncertain in every
    image alike; NaN (an image without two finite samples) stays NaN."""
    gray = std.double().mean(1, keepdim=True)
    top = gray.nan_to_num(0.0).max()
    return gray / top if top > 0 else gray * 0.0


def save_grid(path, panels: list[torch.Tensor], scale: int = 2, diverged=(), recovery: int = -1) -> Path:
    """Panels side by side (truth | back-projection | recovery, and with several samples their std
    map), each a square-ish tile of the images; in panel ``recovery`` the images whose index is in
    ``diverged`` are framed in red."""
    ncol = math.ceil(math.sqrt(panels[0].shape[0]))
    recovery = recovery % len(panels)
    tiles = [tile(p, ncol, marked=set(diverged) if k == recovery else ()) for k, p in enumerate(panels)]
    gap = np.full((tiles[0].shape[0], 4, 3), 128, dtype=np.uint8)
    parts = []
    for t in tiles:
        parts += [t, gap]
    img = Image.fromarray(np.concatenate(parts[:-1], axis=1))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def wandb_run_id(run_dir, result_id: str) -> str:
    """The W&B run id of a run folder: a requeued job (same folder) continues its run, a
    new run folder starts a new one even with the same settings."""
    where = Path(run_dir).expanduser().resolve().as_posix()
    return hashlib.sha256(f"{where}\0{result_id}".encode()).hexdigest()[:20]


class NullLogger:
    """``logger=none``: the run folder only."""

    def start(self, config: dict, run_dir: Path, run_id=None, name=None, group=None, tags=()) -> None:
        pass

    def log_results(self, metrics: dict, per_image: list[dict], grid_path: Path) -> None:
        pass

    def log(self, values: dict, step: int) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


@settings("logger", project=text(), entity=text(null=True), mode=choice("online", "offline", "disabled"),
          group=text(null=True), tags=text_list(), name=text(null=True))
class WandbLogger:
    """One W&B run per job. Offline unless ``mode=online`` or WANDB_MODE says otherwise; an
    offline run lives in <run_dir>/wandb and is uploaded later with ``wandb sync``.

    The runner passes the run id (derived from the run folder and the result id, so a
    requeued job, which keeps its folder, continues its W&B run, and a new run folder is a
    new run), a name from the job's overrides, the sweep as group and tags from the built
    components; values set in the logger config win over those."""

    def __init__(self, project: str = "qcsbench", entity: str | None = None, mode: str = "offline",
                 group: str | None = None, tags=(), name: str | None = None):
        self.account = dict(project=project, entity=entity, mode=mode)
        self.chosen = dict(group=group, name=name, tags=list(tags or []))
        self.run = None

    def start(self, config, run_dir, run_id=None, name=None, group=None, tags=()):
        import wandb

        self.run = wandb.init(config=config, dir=str(run_dir), reinit="finish_previous", id=run_id,
                              resume="allow" if run_id else None, name=self.chosen["name"] or name,
                              group=self.chosen["group"] or group, tags=list(tags) + self.chosen["tags"],
                              **self.account)

    def log_results(self, metrics, per_image, grid_path):
        import wandb

        columns = list(per_image[0]) if per_image else []
        table = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in per_image])
        self.run.log({"per_image": table, "grid": wandb.Image(str(grid_path))})
        self.run.summary.update({k: v for k, v in metrics.items() if v is not None})

    def log(self, values, step):
        """Training curves (scripts/train.py): loss, held-out PSNR."""
        self.run.log(values, step=step)

    def finish(self, exit_code=0):
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
