"""Build everything from the config, recover, evaluate, save, log.

Every check of the configuration runs before the first expensive step (fitting or
loading the prior, drawing a large A), so a typo costs a second, not a run.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from qcsbench import files, fingerprint, metrics, progress, tracking
from qcsbench.errors import ConfigError, unwritable
from qcsbench.resolvers import channel_label
from qcsbench.problem import summarize_stats
from qcsbench.randomness import SAMPLER, ImageRandom
from qcsbench.setup import Setup, build, instantiate
from qcsbench.store import ResultStore, batch_coupled, batches_to_run, result_key
from qcsbench.validate import check_config

log = logging.getLogger(__name__)


def run_dir_of(cfg) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.get("run_dir") or ".")


def job_identity(cfg, described: dict) -> dict:
    """W&B name, group and tags of this job, from the built components: named from its
    overrides, grouped by its sweep."""
    method, channel, operator = described["method"], described["quantizer"], described["operator"]
    tags = [f"method={method['name']}", f"quantizer={channel['name']}", f"m={operator['m']}",
            f"operator={operator['name']}", f"dataset={described['dataset']['name']}"]
    if "bits" in channel:
        tags.append(f"bits={channel['bits']}")
    label = channel_label(cfg.quantizer._target_, cfg.bits)  # the same word as the run folder's name
    name, group = f"{method['name']}-{label}-m{operator['m']}", None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.job.override_dirname:
            name = hc.job.override_dirname
        if hc.mode == RunMode.MULTIRUN:
            group = Path(hc.sweep.dir).as_posix().replace("/", "_").strip("_")
    return dict(name=name, group=group, tags=tags)


def summarize(records: list[dict], computed: set, cfg, described: dict, profile: metrics.Profile) -> dict:
    """Metrics over all images (as ``profile`` defines them); time over the images this run
    computed (a resumed image's seconds were measured elsewhere, perhaps on another machine).
    Settings are the built components' own (``described``), not the config's."""
    rows = [r["row"] for r in records]
    ok = [row for row in rows if row["status"] == "ok"]
    seconds = sum(r["seconds"] for r in records if r["index"] in computed)
    channel = described["quantizer"]
    out = dict(num_images=len(rows), num_diverged=len(rows) - len(ok), nfe=max(r["nfe"] for r in records),
               num_computed=len(computed), seconds=seconds,
               seconds_per_image=seconds / len(computed) if computed else None,
               method=described["method"]["name"], quantizer=channel["name"], bits=channel.get("bits"),
               m=described["operator"]["m"], operator=described["operator"]["name"],
               noise_std=channel["noise_std"], seed=cfg.seed, dataset=described["dataset"]["name"],
               prior=described["prior"]["name"], components=described, metric_profile=profile.describe())
    for name in profile.names:
        values = np.array([row[name] for row in ok], dtype=np.float64)
        out[f"{name}_mean"] = tracking.finite_or_none(values.mean()) if len(values) else None
        out[f"{name}_std"] = tracking.finite_or_none(values.std()) if len(values) else None
    return out


def metric_rows(indices, x_hat: torch.Tensor, x: torch.Tensor, profile: metrics.Profile) -> list[dict]:
    """Each image's metrics row: status ok with its metrics, or diverged (NaN or Inf) with none."""
    scores = profile.evaluate(x_hat, x)
    rows = []
    for j, index in enumerate(indices):
        finite = bool(torch.isfinite(x_hat[j]).all()) and all(bool(torch.isfinite(scores[k][j])) for k in profile.names)
        row = dict(index=index, status="ok" if finite else "diverged")
        row.update({k: float(scores[k][j]) if finite else None for k in profile.names})
        rows.append(row)
    return rows


def recover_batch(setup: Setup, indices) -> list[dict]:
    """Measure and recover one batch; one record per image (metrics row, recovery, A^T y, cost, and
    the fingerprint of the test image it was computed from)."""
    problem, x = setup.problem(indices)
    device = setup.device
    tic = time.perf_counter()
    prior = setup.prior if setup.method.needs_prior else None
    result = setup.method.recover(problem, prior, ImageRandom(setup.cfg.seed, indices, SAMPLER, device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - tic) / len(indices)
    result_x, truth = result.x_hat.cpu(), x.cpu()
    rows = metric_rows(indices, result.x_hat, x, setup.metrics)
    back = problem.back_projection().cpu()
    records = []
    for j, index in enumerate(indices):
        # clone: a view would carry the whole batch's storage into each image's store file
        records.append(dict(index=index, row=rows[j], recon=result_x[j].clone(), back_projection=back[j].clone(),
                            nfe=int(result.nfe), seconds=float(seconds), image=fingerprint.image(truth[j]),
                            stats={k: float(v[j]) for k, v in result.stats.items()}))
    psnr = torch.tensor([r["psnr"] if r["psnr"] is not None else float("nan") for r in rows])
    log.info("images %d-%d: psnr %.2f dB", indices[0], indices[-1], float(psnr.nanmean()))
    return records


# A stored row is trusted when each metric is within this of what its stored recovery gives
# (recomputed on the CPU in float64; only the summation order can differ from the first time).
ROW_TOLERANCE = 1e-6


def rows_agree(stored, recomputed: dict) -> bool:
    if not isinstance(stored, dict) or stored.get("status") != recomputed["status"]:
        return False
    for name in [k for k in recomputed if k not in ("index", "status")]:
        a, b = stored.get(name), recomputed[name]
        if b is None:
            if a is not None:
                return False
        elif not isinstance(a, float) or not abs(a - b) <= ROW_TOLERANCE * max(1.0, abs(b)):
            return False
    return True


def check_stored(records: dict, test_set, batch_size: int, profile: metrics.Profile) -> dict[str, list[int]]:
    """The stored records that cannot be resumed, by reason: ``other images`` (the image's fingerprint
    is not the test image's now: the data changed) and ``other metrics`` (the metrics row is not what
    the stored recovery gives against the truth: an edited or damaged record)."""
    bad = {"other images": [], "other metrics": []}
    indices = sorted(records)
    for start in range(0, len(indices), batch_size):  # decoded a batch at a time, as the run decodes them
        chunk = indices[start:start + batch_size]
        truth = test_set.batch(chunk)
        same = [i for j, i in enumerate(chunk) if records[i].get("image") == fingerprint.image(truth[j])]
        bad["other images"] += [i for i in chunk if i not in same]
        kept = [i for i in same if isinstance(records[i].get("recon"), torch.Tensor)
                and records[i]["recon"].shape == truth.shape[1:]]
        bad["other metrics"] += [i for i in same if i not in kept]
        if kept:
            recon = torch.stack([records[i]["recon"] for i in kept])
            rows = metric_rows(kept, recon, truth[[chunk.index(i) for i in kept]], profile)
            bad["other metrics"] += [i for i, row in zip(kept, rows) if not rows_agree(records[i].get("row"), row)]
    return bad


def resumable(store: ResultStore, test_set, num_images: int, batch_size: int,
              profile: metrics.Profile) -> dict[int, dict]:
    """The stored records of the first ``num_images`` images that hold what this run would compute;
    the others are recomputed, with a warning that says why."""
    records = store.load(range(num_images))
    for reason, indices in check_stored(records, test_set, batch_size, profile).items():
        if indices:
            shown = ", ".join(map(str, indices[:5])) + (" ..." if len(indices) > 5 else "")
            what = ("were computed from other images than the dataset now holds" if reason == "other images" else
                    "hold a metrics row that their stored recovery does not give")
            log.warning("%d stored results in %s %s (images %s); they are recomputed", len(indices), store.dir,
                        what, shown)
            for index in indices:
                records.pop(index)
    return records


def write_results(run_dir: Path, records: list[dict], summary: dict, test_set, sources: list[str]) -> Path:
    """The run folder's files; metrics.json last, so its presence means the run finished.
    test_images.txt names each test image's source, in order (a folder's file names, which
    ``dataset.manifest=`` reads back)."""
    truth = test_set.batch([r["index"] for r in records])
    recon = torch.stack([r["recon"] for r in records])
    back = torch.stack([r["back_projection"] for r in records])
    files.write_csv(run_dir / "per_image.csv", [r["row"] for r in records])
    files.write_text(run_dir / "test_images.txt", "".join(f"{source}\n" for source in sources))
    files.save_tensors(run_dir / "recon.pt", dict(truth=truth, recon=recon, back_projection=back,
                                                     indices=torch.tensor([r["index"] for r in records])))
    diverged = [i for i, r in enumerate(records) if r["row"]["status"] == "diverged"]
    grid = tracking.save_grid(run_dir / "grid.png", [truth, tracking.minmax(back), recon], diverged=diverged)
    files.write_json(run_dir / "metrics.json", summary)
    return grid


def warn_other_versions(store: ResultStore) -> None:
    earlier = store.earlier_versions()
    if sum(earlier.values()):
        log.warning("%d earlier results for these settings were made by other code (version %s) and are "
                    "recomputed with this code (version %s)", sum(earlier.values()), ", ".join(earlier), store.version)


def save_to_store(store: ResultStore, record: dict) -> None:
    """Store a finished image; a store that cannot take it (disk full, gone read-only) costs a
    future resume that image, not this run its results."""
    try:
        store.save(record)
    except OSError as err:
        log.warning("could not store image %d in %s (%s); this run's folder still gets it, a re-run recomputes it",
                    record["index"], store.dir, err.strerror or err)


@contextlib.contextmanager
def run_folder_writes(run_dir: Path, store: ResultStore, resume: bool):
    """A run folder that cannot be written (disk full, read-only) ends the run in one sentence
    that says where its finished images are."""
    try:
        yield
    except OSError as err:
        if unwritable(err) is None:
            raise
        kept = (f"the finished images are kept in results_dir={store.dir} and a re-run resumes them" if resume
                else "with resume=false the finished images are not kept")
        raise ConfigError(f"the run folder {run_dir} could not be written ({err.strerror}: {err.filename}): {kept}; "
                          "free some space or give hydra.run.dir a folder you can write to.") from None


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    config = check_config(cfg)  # every knob, before any data is read or any prior built
    run_dir = run_dir_of(cfg)
    setup = build(cfg)
    logger = instantiate(cfg.logger)
    inputs = fingerprint.inputs(config, setup.method.needs_prior)
    store = ResultStore(Path(str(cfg.results_dir)).expanduser(),
                        result_key(config, getattr(setup.method, "weights", None), inputs))
    with store.locked() if cfg.resume else contextlib.nullcontext():
        return recover_all(setup, config, run_dir, store, logger, started)


def recover_all(setup: Setup, config, run_dir, store, logger, started) -> dict:
    """Everything after the set-up: resume from the store, build the prior if any image is
    missing, recover, write the run folder and log."""
    cfg, method = setup.cfg, setup.method
    num_images = cfg.num_images
    records = resumable(store, setup.test_set, num_images, cfg.batch_size, setup.metrics) if cfg.resume else {}
    batches = batches_to_run(num_images, cfg.batch_size, records, batch_coupled(store.key))
    todo = [i for b in batches for i in b]
    if cfg.resume and todo:
        warn_other_versions(store)
    if todo and method.needs_prior:  # a run whose every image is already in the store needs no prior at all
        setup.prior  # noqa: B018  (built now, so that the settings reported name the prior built)
    described = setup.describe()
    if records:
        log.info("%d of %d images are already finished in %s; recovering %d",
                 num_images - len(todo), num_images, store.dir, len(todo))
    with run_folder_writes(run_dir, store, cfg.resume):
        files.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    logger.start(dict(config, described=described, result_id=store.id), run_dir,
                 run_id=tracking.wandb_run_id(run_dir, store.id), **job_identity(cfg, described))
    exit_code = 1
    try:
        images = progress.Progress(len(todo), f"{method.name}, all images", unit="images", every=0, bar=False)
        for batch in batches:
            with progress.labelled(f"{method.name} images {batch[0]}-{batch[-1]}"):
                for record in recover_batch(setup, batch):
                    records[record["index"]] = record
                    if cfg.resume:
                        save_to_store(store, record)
            images.update(len(batch))
        ordered = [records[i] for i in range(num_images)]
        summary = summarize(ordered, set(todo), cfg, described, setup.metrics)
        sources = [setup.test_set.source(r["index"]) for r in ordered]
        summary["image_fingerprint"] = fingerprint.test_images(sources, [r["image"] for r in ordered])
        summary.update(summarize_stats([r.get("stats", {}) for r in ordered]))
        summary.update(num_resumed=num_images - len(todo), seconds_total=time.perf_counter() - started,
                       result_id=store.id, code_version=store.version)
        if summary["num_diverged"]:
            log.warning("%d of %d images diverged (NaN or Inf); they are marked in per_image.csv and left out "
                        "of the means", summary["num_diverged"], num_images)
        with run_folder_writes(run_dir, store, cfg.resume):
            grid = write_results(run_dir, ordered, summary, setup.test_set, sources)
        logger.log_results(summary, [r["row"] for r in ordered], grid)
        exit_code = 0
        log.info("psnr %.2f dB, ssim %.3f over %d images; results in %s", summary["psnr_mean"] or float("nan"),
                 summary["ssim_mean"] or float("nan"), num_images, run_dir)
        return summary
    finally:
        logger.finish(exit_code)
