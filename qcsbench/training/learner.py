"""Training a learned recovery method for exactly the problem it will be evaluated on
(docs/architecture.md §5): ``python scripts/train.py learner=idm bits=1 m=200 ...``.

Each step draws images from the train split (less a held-out tail), measures them through the
problem's operator and channel (built by setup.build_problem, as for a run) with fresh noise, and
takes one Adam step on the learner's loss (training/state.py). EMA weights are what the model file
holds. Every ``save_every`` steps the run folder gets checkpoint.pt (resumable: raw weights, Adam,
EMA, step, history) and model.pt (what method.checkpoint reads), both written atomically; every
``eval_every`` steps the EMA network recovers the held-out images from fixed measurements and its
PSNR goes to history.json, the log and W&B.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from qcsbench import files, metrics
from qcsbench.errors import ConfigError
from qcsbench.formats import learned_file
from qcsbench.problem import Problem
from qcsbench.randomness import seed_for
from qcsbench.setup import build_prior, build_problem, instantiate, problem_record
from qcsbench.tracking import wandb_run_id
from qcsbench.training.state import TrainState, start
from qcsbench.validate import check_train_config

log = logging.getLogger("train")

EVAL_SEED = 1234  # the held-out images' measurement noise, the same at every evaluation and on resume
CHECKPOINT_KEYS = ("learner", "spec", "problem", "model", "ema", "optimizer", "step", "loss", "train_config")
# Settings a resumed run may change: when and how long it trains, reports and saves, and where it
# runs; every other setting (lr, seed, batch_size, the prior, ...) makes it another training run.
FREE = ("max_steps", "max_minutes", "eval_every", "log_every", "save_every", "threads", "device", "resume",
        "out_dir", "cache_dir", "logger", "minutes", "history", "prior.autocast", "prior.compile")


class Training(TrainState):
    """One training run's parts: the data, the problem's operator and channel, the learner in
    training (TrainState: its EMA copy, Adam, step) and where the run stands (minutes, history)."""

    def __init__(self, cfg, config: dict, device):
        self.cfg, self.config, self.device = cfg, config, device
        self.out_dir = Path(str(cfg.out_dir)).expanduser()
        test_set, operator, self.channel = build_problem(cfg)
        self.train_set = instantiate(cfg.dataset, split="train")
        if not 0 < cfg.eval_images < len(self.train_set):
            raise ConfigError(f"eval_images={cfg.eval_images} is not allowed with {len(self.train_set)} training "
                              f"images: hold out between 1 and {len(self.train_set) - 1}.")
        self.problem_record = problem_record(test_set, operator, self.channel)
        self.operator = operator.to(self.device, torch.float32)
        self.operator.gram_eig()  # once, before the first step needs it
        net = instantiate(cfg.learner, prior=build_prior(cfg, test_set, self.device))
        super().__init__(net.to(self.device), cfg.lr)
        n = len(self.train_set)
        self.pool = torch.arange(n - cfg.eval_images)
        self.eval_x = self.train_set.batch(range(n - cfg.eval_images, n)).to(self.device)
        g = torch.Generator(device=self.device).manual_seed(EVAL_SEED)
        self.eval_problem = Problem.measure(self.eval_x, self.operator, self.channel, g)
        self.minutes, self.history = 0.0, []

    @property
    def learner(self) -> str:
        return learned_file.learner_of(self.net)

    def resume(self, path: Path) -> None:
        state = learned_file.read(path, "out_dir checkpoint")
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
        if isinstance(state.get("train_config"), dict):
            missing += [f"train_config.{k}" for k in ("minutes", "history") if k not in state["train_config"]]
        if missing:
            raise ConfigError(f"{path} lacks {', '.join(missing)}, which a checkpoint.pt of scripts/train.py holds: "
                              "pick a new out_dir, or resume=false to start over there.")
        if state["learner"] != self.learner or state["spec"] != self.net.spec() or state["problem"] != self.problem_record:
            raise ConfigError(f"{path} holds a training run of another learner or problem: pick a new out_dir, "
                              "or resume=false to start over there.")
        changed = changed_settings(state["train_config"], self.config)
        if changed:
            raise ConfigError(f"{path} was trained with other settings ({'; '.join(changed)}): resume with the values "
                              "it was trained with, pick a new out_dir, or resume=false to start over there.")
        super().resume(state, f"out_dir checkpoint {path}", self.learner)
        self.minutes, self.history = state["train_config"]["minutes"], state["train_config"]["history"]
        log.info("resumed from %s at step %d (%.1f min trained)", path, self.step, self.minutes)

    def batch(self) -> tuple[Problem, torch.Tensor]:
        """Images and fresh measurements for this step, both drawn from the step number (a resumed
        run sees the data an uninterrupted one would have)."""
        g = torch.Generator().manual_seed(seed_for(self.cfg.seed, self.step, 0))
        idx = self.pool[torch.randint(len(self.pool), (self.cfg.batch_size,), generator=g)]
        x = self.train_set.batch(idx.tolist()).to(self.device)
        noise = torch.Generator(device=self.device).manual_seed(seed_for(self.cfg.seed, self.step, 1))
        return Problem.measure(x, self.operator, self.channel, noise), x

    def train_step(self) -> float:
        problem, x = self.batch()
        # the learner's own randomness (a diffusion model's level and noise), also from the step number
        noise = torch.Generator(device=self.device).manual_seed(seed_for(self.cfg.seed, self.step, 2))
        loss = self.net.loss(problem, x, noise)
        if not torch.isfinite(loss):
            raise ConfigError(f"the training loss is {float(loss)} at step {self.step}: lower lr or grad_clip "
                              "(the last checkpoint.pt in out_dir is kept).")
        return self.update(loss, self.cfg, memory=0.02)

    @torch.no_grad()
    def evaluate(self) -> float:
        x_hat = self.ema(self.eval_problem).clamp(0, 1)
        return float(metrics.psnr(x_hat, self.eval_x).mean())

    def save(self) -> None:
        """model.pt (EMA weights) and checkpoint.pt (everything to resume), each atomically."""
        last = self.history[-1]["eval_psnr"] if self.history else None
        train_config = dict(self.config, minutes=self.minutes, history=self.history)
        common = dict(learner=self.learner, spec=self.net.spec(), problem=self.problem_record, step=self.step,
                      loss=self.running, eval_psnr=last, train_config=train_config)
        learned_file.write(self.out_dir / "checkpoint.pt", **common, **self.weights(resumable=True))
        learned_file.write(self.out_dir / "model.pt", **common, **self.weights(resumable=False))
        files.write_json(self.out_dir / "history.json", self.history)


def train(cfg: DictConfig) -> dict:
    """Train, save and return the final figures (the value a sweeper reads is eval_psnr)."""
    config = check_train_config(cfg)
    run = Training(cfg, config, start(cfg))
    ckpt = run.out_dir / "checkpoint.pt"
    if cfg.resume and ckpt.is_file():
        run.resume(ckpt)
    files.write_text(run.out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    logger = instantiate(cfg.logger)
    logger.start(config, run.out_dir, run_id=wandb_run_id(run.out_dir, "train"),
                 name=f"train-{cfg.learner.name}-m{cfg.m}", group="train", tags=("train", cfg.learner.name))
    trainable = sum(p.numel() for p in run.net.parameters() if p.requires_grad)
    log.info("%s: %d trainable parameters, %d training images (%d held out), device %s", run.learner, trainable,
             len(run.pool), cfg.eval_images, run.device)
    started, exit_code = time.time() - 60 * run.minutes, 1
    try:
        if not run.history:
            record(run, logger, started)
        while run.step < cfg.max_steps:
            loss = run.train_step()
            run.minutes = (time.time() - started) / 60
            if run.step % cfg.log_every == 0:
                log.info("step %d  loss %.4f (running %.4f)  %.1f min", run.step, loss, run.running, run.minutes)
                logger.log(dict(loss=loss, running_loss=run.running), run.step)
            out_of_time = cfg.max_minutes is not None and run.minutes >= cfg.max_minutes
            if run.step % cfg.eval_every == 0 or run.step == cfg.max_steps or out_of_time:
                record(run, logger, started)
            if run.step % cfg.save_every == 0:
                run.save()
            if out_of_time:
                log.info("max_minutes=%s reached at step %d", cfg.max_minutes, run.step)
                break
        run.save()
        exit_code = 0
    finally:
        logger.finish(exit_code)
    final = dict(step=run.step, minutes=run.minutes, loss=run.running, eval_psnr=run.history[-1]["eval_psnr"])
    log.info("done: step %d, %.1f min, held-out PSNR %.2f dB; wrote %s", run.step, run.minutes, final["eval_psnr"],
             run.out_dir / "model.pt")
    return final


def changed_settings(trained: dict, current: dict) -> list[str]:
    """'key (trained A, here B)' for every setting that differs and is not FREE."""
    def free(key):
        return any(key == f or key.startswith(f + ".") for f in FREE)
    return [d for d in learned_file.mismatch(trained, current) if not free(d.split(" ", 1)[0])]


def record(run: Training, logger, started: float) -> None:
    """Evaluate the EMA network on the held-out images and append it to the history."""
    run.minutes = (time.time() - started) / 60
    psnr = run.evaluate()
    if not run.history or run.history[-1]["step"] != run.step:
        run.history.append(dict(step=run.step, minutes=round(run.minutes, 3), loss=run.running, eval_psnr=psnr))
    log.info("step %d  held-out PSNR %.2f dB (EMA, %d images)", run.step, psnr, len(run.eval_x))
    logger.log(dict(eval_psnr=psnr), run.step)
