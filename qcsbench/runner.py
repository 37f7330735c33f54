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

from qcsbench import files, fingerprint, metrics, progress, spread, tracking
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
    if cfg.get("num_samples", 1) > 1:  # not in the name (result_keys.RUN_NAME_EXCLUDED), so a tag
        tags.append(f"num_samples={cfg.num_samples}")
    label = channel_label(cfg.quantizer._target_, cfg.bits)  # the same word as the run folder's name
    name, group = f"{method['name']}-{label}-m{operator['m']}", None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.job.override_dirname:
            name = hc.job.override_dirname
        if hc.mode == RunMode.MULTIRUN:
            group = Path(hc.sweep.dir).as_posix().replace("/", "_").strip("_")
    return dict(name=name, group=group, tags=tags)


def summarize(rows: list[dict], records: list[dict], computed: set, cfg, described: dict,
              profile: metrics.Profile) -> dict:
    """Metrics over all images (``rows``, one per image, as ``profile`` defines them); costs over their recoveries (``records``,
    one per image and sample), time over the recoveries this run computed (a resumed one's seconds
    were measured elsewhere, perhaps on another machine). Settings are the built components' own
    (``described``), not the config's."""
    ok = [row for row in rows if row["status"] == "ok"]
    seconds = sum(r["seconds"] for r in records if (r["index"], r.get("sample", 0)) in computed)
    samples = cfg.get("num_samples", 1)
    channel = described["quantizer"]
    out = dict(num_images=len(rows), num_diverged=len(rows) - len(ok), nfe=max(r["nfe"] for r in records),
               num_samples=samples, num_computed=len(computed), seconds=seconds,
               seconds_per_image=seconds * samples / len(computed) if computed else None,
               method=described["method"]["name"], quantizer=channel["name"], bits=channel.get("bits"),
               m=described["operator"]["m"], operator=described["operator"]["name"],
               noise_std=channel["noise_std"], seed=cfg.seed, dataset=described["dataset"]["name"],
               prior=described["prior"]["name"], components=described, metric_profile=profile.describe())
    sampled = (*(f"{name}_single" for name in profile.names), *spread.STATISTICS) if samples > 1 else ()
    for name in (*profile.names, *sampled):
        values = np.array([row[name] for row in ok if row[name] is not None], dtype=np.float64)
        out[f"{name}_mean"] = tracking.finite_or_none(values.mean()) if len(values) else None
        out[f"{name}_std"] = tracking.finite_or_none(values.std()) if len(values) else None
    if samples > 1:
        out["num_samples_diverged"] = sum(row["samples_diverged"] for row in rows)
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


def unit_label(unit) -> str:
    """A recovery (image, sample) as the log names it: the image, with /sample after the first sample."""
    index, sample = unit
    return f"{index}/{sample}" if sample else f"{index}"


def recover_batch(setup: Setup, units) -> list[dict]:
    """Measure the batch's images and recover each of ``units`` (image, sample) from its image's y, with
    the sample's own sampler stream; one record per unit (metrics row, recovery, A^T y, cost, and the
    fingerprint of the test image it was computed from)."""
    indices = list(dict.fromkeys(index for index, _ in units))
    problem, x = setup.problem(indices)
    positions = [indices.index(index) for index, _ in units]
    if positions != list(range(len(indices))):  # several samples of an image: its one y, once per sample
        problem, x = problem.select(positions), x[positions]
    device = setup.device
    tic = time.perf_counter()
    prior = setup.prior if setup.method.needs_prior else None
    stream = ImageRandom(setup.cfg.seed, [index for index, _ in units], SAMPLER, device, [s for _, s in units])
    result = setup.method.recover(problem, prior, stream)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - tic) / len(units)
    result_x, truth = result.x_hat.cpu(), x.cpu()
    rows = metric_rows([index for index, _ in units], result.x_hat, x, setup.metrics)
    back = problem.back_projection().cpu()
    records = []
    for j, (index, sample) in enumerate(units):
        # clone: a view would carry the whole batch's storage into each image's store file
        records.append(dict(index=index, sample=sample, row=rows[j], recon=result_x[j].clone(),
                            back_projection=back[j].clone(), nfe=int(result.nfe), seconds=float(seconds),
                            image=fingerprint.image(truth[j]), stats={k: float(v[j]) for k, v in result.stats.items()}))
    psnr = torch.tensor([r["psnr"] if r["psnr"] is not None else float("nan") for r in rows])
    log.info("images %s-%s: psnr %.2f dB", unit_label(units[0]), unit_label(units[-1]), float(psnr.nanmean()))
    return records


def combined(index: int, samples: list[dict], truth: torch.Tensor, profile: metrics.Profile) -> dict:
    """Image ``index``'s result from its samples' records: the mean of its finite samples (the MMSE
    estimate) with its metrics, the mean of the samples' own metrics (``psnr_single``, ...), their
    spread (spread.STATISTICS) and per-pixel std (None and NaN with fewer than two finite samples),
    and how many samples diverged."""
    ok = [r for r in samples if r["row"]["status"] == "ok"]
    finite = torch.stack([r["recon"] for r in ok]) if ok else torch.full_like(samples[0]["recon"], np.nan)[None]
    mean = finite.double().mean(0).float()
    row = metric_rows([index], mean[None], truth[None], profile)[0]
    row.update({f"{name}_single": sum(r["row"][name] for r in ok) / len(ok) if ok else None for name in profile.names})
    row.update(spread.statistics(finite, truth) if len(ok) > 1 else dict.fromkeys(spread.STATISTICS))
    row["samples_diverged"] = len(samples) - len(ok)
    return dict(index=index, row=row, recon=mean, back_projection=samples[0]["back_projection"],
                std=finite.std(0) if len(ok) > 1 else torch.full_like(mean, np.nan),
                samples=torch.stack([r["recon"] for r in samples]))


def image_results(records: dict, num_images: int, num_samples: int, truth: torch.Tensor,
                  profile: metrics.Profile) -> list[dict]:
    """One result per image from the records of its recoveries: with one sample, its record as it is."""
    if num_samples == 1:
        return [records[i, 0] for i in range(num_images)]
    return [combined(i, [records[i, s] for s in range(num_samples)], truth[i], profile) for i in range(num_images)]


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


def check_stored(records: dict, test_set, batch_size: int, profile: metrics.Profile) -> dict[str, list[tuple]]:
    """The stored records (by (image, sample)) that cannot be resumed, by reason: ``other images``
    (the image's fingerprint is not the test image's now: the data changed) and ``other metrics``
    (the metrics row is not what the stored recovery gives against the truth: an edited or damaged
    record)."""
    bad = {"other images": [], "other metrics": []}
    by_image = {}
    for unit in sorted(records):
        by_image.setdefault(unit[0], []).append(unit)
    indices = sorted(by_image)
    for start in range(0, len(indices), batch_size):  # decoded a batch at a time, as the run decodes them
        chunk = indices[start:start + batch_size]
        truth = dict(zip(chunk, test_set.batch(chunk)))
        prints = {index: fingerprint.image(image) for index, image in truth.items()}
        units = [unit for index in chunk for unit in by_image[index]]
        same = [u for u in units if records[u].get("image") == prints[u[0]]]
        bad["other images"] += [u for u in units if u not in same]
        kept = [u for u in same if isinstance(records[u].get("recon"), torch.Tensor)
                and records[u]["recon"].shape == truth[u[0]].shape]
        bad["other metrics"] += [u for u in same if u not in kept]
        if kept:
            recon = torch.stack([records[u]["recon"] for u in kept])
            rows = metric_rows([u[0] for u in kept], recon, torch.stack([truth[u[0]] for u in kept]), profile)
            bad["other metrics"] += [u for u, row in zip(kept, rows) if not rows_agree(records[u].get("row"), row)]
    return bad


def resumable(store: ResultStore, test_set, units, batch_size: int, profile: metrics.Profile) -> dict[tuple, dict]:
    """The stored records of ``units`` (image, sample) that hold what this run would compute; the
    others are recomputed, with a warning that says why."""
    records = store.load(units)
    for reason, bad in check_stored(records, test_set, batch_size, profile).items():
        if bad:
            shown = ", ".join(map(unit_label, bad[:5])) + (" ..." if len(bad) > 5 else "")
            what = ("were computed from other images than the dataset now holds" if reason == "other images" else
                    "hold a metrics row that their stored recovery does not give")
            log.warning("%d stored results in %s %s (images %s); they are recomputed", len(bad), store.dir,
                        what, shown)
            for unit in bad:
                records.pop(unit)
    return records


def write_results(run_dir: Path, images: list[dict], summary: dict, truth: torch.Tensor, sources: list[str]) -> Path:
    """The run folder's files; metrics.json last, so its presence means the run finished.
    test_images.txt names each test image's source, in order (a folder's file names, which
    ``dataset.manifest=`` reads back). With
    several samples, ``recon`` is their mean, recon.pt adds ``std`` (per pixel) and ``samples``
    (every sample, diverged ones included), and the grid a column of std maps."""
    recon = torch.stack([r["recon"] for r in images])
    back = torch.stack([r["back_projection"] for r in images])
    files.write_csv(run_dir / "per_image.csv", [r["row"] for r in images])
    files.write_text(run_dir / "test_images.txt", "".join(f"{source}\n" for source in sources))
    tensors = dict(truth=truth, recon=recon, back_projection=back, indices=torch.tensor([r["index"] for r in images]))
    panels = [truth, tracking.minmax(back), recon]
    if "samples" in images[0]:
        tensors.update(std=torch.stack([r["std"] for r in images]), samples=torch.stack([r["samples"] for r in images]))
        panels.append(tracking.std_map(tensors["std"]))
    files.save_tensors(run_dir / "recon.pt", tensors)
    diverged = [i for i, r in enumerate(images) if r["row"]["status"] == "diverged"]
    grid = tracking.save_grid(run_dir / "grid.png", panels, diverged=diverged, recovery=2)
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
        log.warning("could not store image %s in %s (%s); this run's folder still gets it, a re-run recomputes it",
                    unit_label((record["index"], record["sample"])), store.dir, err.strerror or err)


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
    """Everything after the set-up: resume from the store, build the prior if any recovery is
    missing, recover, write the run folder and log. A recovery is one sample of one image."""
    cfg, method = setup.cfg, setup.method
    num_images, num_samples = cfg.num_images, cfg.get("num_samples", 1)
    units = [(i, s) for i in range(num_images) for s in range(num_samples)]
    records = resumable(store, setup.test_set, units, cfg.batch_size, setup.metrics) if cfg.resume else {}
    batches = batches_to_run(num_images, cfg.batch_size, records, batch_coupled(store.key), num_samples)
    todo = [u for b in batches for u in b]
    if cfg.resume and todo:
        warn_other_versions(store)
    if todo and method.needs_prior:  # a run whose every image is already in the store needs no prior at all
        setup.prior  # noqa: B018  (built now, so that the settings reported name the prior built)
    described = setup.describe()
    if cfg.resume and setup.prior_built:
        store.remember_prior(described["prior"])
    elif cfg.resume and method.needs_prior:  # every image resumed: report the prior that computed them
        described["prior"] = store.remembered_prior() or described["prior"]
    unit = "images" if num_samples == 1 else "recoveries"  # a recovery: one sample of one image
    if records:
        log.info("%d of %d %s are already finished in %s; recovering %d",
                 len(units) - len(todo), len(units), unit, store.dir, len(todo))
    with run_folder_writes(run_dir, store, cfg.resume):
        files.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    logger.start(dict(config, described=described, result_id=store.id), run_dir,
                 run_id=tracking.wandb_run_id(run_dir, store.id), **job_identity(cfg, described))
    exit_code = 1
    try:
        done = progress.Progress(len(todo), f"{method.name}, all {unit}", unit=unit, every=0, bar=False)
        for batch in batches:
            with progress.labelled(f"{method.name} images {unit_label(batch[0])}-{unit_label(batch[-1])}"):
                for record in recover_batch(setup, batch):
                    records[record["index"], record["sample"]] = record
                    if cfg.resume:
                        save_to_store(store, record)
            done.update(len(batch))
        truth = setup.test_set.batch(range(num_images))
        images = image_results(records, num_images, num_samples, truth, setup.metrics)
        ordered = [records[u] for u in units]
        summary = summarize([r["row"] for r in images], ordered, set(todo), cfg, described, setup.metrics)
        sources = [setup.test_set.source(i) for i in range(num_images)]
        summary["image_fingerprint"] = fingerprint.test_images(sources, [records[i, 0]["image"] for i in range(num_images)])
        summary.update(summarize_stats([r.get("stats", {}) for r in ordered]))
        summary.update(num_resumed=len(units) - len(todo), seconds_total=time.perf_counter() - started,
                       result_id=store.id, code_version=store.version)
        if summary["num_diverged"]:
            log.warning("%d of %d images diverged (NaN or Inf); they are marked in per_image.csv and left out "
                        "of the means", summary["num_diverged"], num_images)
        with run_folder_writes(run_dir, store, cfg.resume):
            grid = write_results(run_dir, images, summary, truth, sources)
        logger.log_results(summary, [r["row"] for r in images], grid)
        exit_code = 0
        log.info("psnr %.2f dB, ssim %.3f over %d images; results in %s", summary["psnr_mean"] or float("nan"),
                 summary["ssim_mean"] or float("nan"), num_images, run_dir)
        if num_samples > 1:
            log.info("the mean of %d samples: psnr %.2f dB; one sample: psnr %.2f dB; 90 %% coverage %.3f",
                     num_samples, summary["psnr_mean"] or float("nan"), summary["psnr_single_mean"] or float("nan"),
                     summary["coverage_mean"] or float("nan"))
        return summary
    finally:
        logger.finish(exit_code)
