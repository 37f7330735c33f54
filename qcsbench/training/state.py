"""What both training loops share: a network in training with its EMA copy and Adam, the one
optimisation step they take, resuming from a checkpoint's weights, and the start of a run."""
from __future__ import annotations

import copy

import torch

from qcsbench.device import match_slurm_threads, resolve_device
from qcsbench.errors import ConfigError
from qcsbench.formats.checkpoints import first_line, load_state


def start(cfg) -> torch.device:
    """The threads, the global seed (which draws the network's initial weights) and the device of
    a training run ``cfg``."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    else:
        match_slurm_threads()
    torch.manual_seed(cfg.seed)
    return resolve_device(cfg.device)


@torch.no_grad()
def ema_update(ema, net, step: int, ema_decay: float) -> None:
    """Move the EMA weights towards the network's, with a short memory while the weights move fast."""
    decay = min(ema_decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.lerp_(p, 1 - decay)


class TrainState:
    """A network in training: the network, its EMA copy, Adam over its trainable parameters, the
    number of steps taken and a running mean of the loss."""

    def __init__(self, net, lr: float):
        self.net = net
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
        self.step, self.running = 0, None

    def update(self, loss: torch.Tensor, cfg, memory: float) -> float:
        """One Adam step on ``loss``: the learning rate cfg.lr warmed up linearly over cfg.warmup_steps
        (it keeps the first steps small), the gradient clipped at cfg.grad_clip (null: not clipped),
        then the EMA at cfg.ema_decay. Returns the loss; the running mean gives it weight ``memory``."""
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (self.step + 1) / max(1, cfg.warmup_steps))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
        self.opt.step()
        ema_update(self.ema, self.net, self.step, cfg.ema_decay)
        self.step += 1
        value = loss.item()
        self.running = value if self.running is None else (1 - memory) * self.running + memory * value
        return value

    def weights(self, resumable: bool) -> dict:
        """The EMA weights (what a trained file holds); ``resumable`` adds the raw weights and Adam's state."""
        out = dict(ema=self.ema.state_dict())
        if resumable:
            out.update(model=self.net.state_dict(), optimizer=self.opt.state_dict())
        return out

    def resume(self, state: dict, where: str, what: str) -> None:
        """Continue from a checkpoint's weights, Adam state, step and running loss."""
        load_state(self.net, state["model"], where, what)
        load_state(self.ema, state["ema"], where, what)
        try:
            self.opt.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{where} holds an optimizer state that does not fit this network ({first_line(err)}): "
                              "pick a new out_dir, or resume=false to start over there.") from None
        self.step, self.running = int(state["step"]), state["loss"]
