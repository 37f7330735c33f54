"""Sweeps the way researchers run them: local multirun grids, a real SLURM cluster, resume."""
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, run_cli
from qcsbench import aggregation

# Tiny jobs (+debug=tiny, two digits, a shorter ladder); the grid is method x bits.
JOB = [*TINY, "method.num_levels=20", "method.steps_per_level=2", "num_images=2", "batch_size=2"]
GRID = ["method=qcs_sgm,qcs_sgm_plus", "bits=1,2"]


def sweep(sweep_dir, *extra, grid=GRID, env=None):
    proc = run_cli("-m", *JOB, *grid, f"hydra.sweep.dir={sweep_dir}", f"results_dir={sweep_dir.parent / 'results'}",
                   *extra, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def job_metrics(sweep_dir):
    out = {}
    for job in sorted(p for p in Path(sweep_dir).iterdir() if (p / ".hydra").is_dir()):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        out[(overrides["method"], overrides["bits"])] = json.loads((job / "metrics.json").read_text())
    return out


def check_aggregate(sweep_dir, metrics):
    """One seed per setting: the table's cell is that run's own mean; rows are methods, columns bits."""
    result = aggregation.aggregate([sweep_dir])
    assert len(result["runs"]) == len(metrics) and (result["runs"].status == "finished").all()
    for _, cell in result["summary"].iterrows():
        expected = metrics[(cell["method"], cell["bits"])]
        assert cell.psnr_mean == expected["psnr_mean"] and cell.ssim_image_std == expected["ssim_std"]
        assert f"{expected['psnr_mean']:.2f}" in result["table"]
    lines = [line for line in result["table"].splitlines() if line.startswith("| qcs_sgm")]
    methods = {method for method, _ in metrics}
    assert len(lines) == 2 * len(methods) and "| method | bits=1 | bits=2 |" in result["table"]  # PSNR and SSIM tables
    assert (Path(sweep_dir) / "runs.csv").is_file() and (Path(sweep_dir) / "psnr_vs_bits.png").is_file()


@pytest.mark.e2e
def test_local_grid_aggregate_and_resume(tmp_path, cache_dir):
    sweep_dir = tmp_path / "sweep"
    sweep(sweep_dir, "logger=none")
    metrics = job_metrics(sweep_dir)
    assert len(metrics) == 4 and all(m["num_images"] == 2 and m["num_resumed"] == 0 for m in metrics.values())
    check_aggregate(sweep_dir, metrics)

    # Kill part of the work: one job lost its results entirely, another lost one image.
    store = tmp_path / "results"
    lost_job = metrics[("qcs_sgm", "2")]["result_id"]
    shutil.rmtree(store / lost_job)
    lost_image = store / metrics[("qcs_sgm_plus", "1")]["result_id"] / "images" / "000001.pt"
    lost_image.unlink()
    kept = store / metrics[("qcs_sgm", "1")]["result_id"] / "images" / "000000.pt"
    kept_mtime = kept.stat().st_mtime_ns

    again = tmp_path / "again"  # the same command, a new sweep folder
    sweep(again, "logger=none")
    redone = job_metrics(again)
    assert redone[("qcs_sgm", "2")]["num_resumed"] == 0
    # qcs_sgm_plus weights by norms over the batch (the reference): its batch is redone whole
    assert redone[("qcs_sgm_plus", "1")]["num_resumed"] == 0
    assert redone[("qcs_sgm", "1")]["num_resumed"] == 2 and redone[("qcs_sgm_plus", "2")]["num_resumed"] == 2
    assert kept.stat().st_mtime_ns == kept_mtime  # finished work was not recomputed
    for key, m in metrics.items():  # and per-image seeds make the recomputed numbers identical
        assert redone[key]["psnr_mean"] == pytest.approx(m["psnr_mean"], abs=1e-3)


@pytest.mark.e2e
def test_failed_job_does_not_lose_the_others(tmp_path, cache_dir):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli("-m", *JOB, "logger=none", "bits=1,0", f"hydra.sweep.dir={sweep_dir}",
                   f"results_dir={tmp_path / 'results'}")
    assert proc.returncode != 0 and "bits=0 is not allowed" in proc.stderr
    runs = aggregation.find_runs([sweep_dir])
    assert sorted(runs.status) == ["failed", "finished"]
    assert "**failed**" in aggregation.markdown(aggregation.average_seeds(runs))


def wandb_records(sweep_dir):
    """job -> {run id: the run's record}, over every W&B run the job folder holds."""
    out = {}
    for job in sorted(p for p in Path(sweep_dir).iterdir() if (p / ".hydra").is_dir()):
        out[job.name] = {run.name.rsplit("-", 1)[1]: next(run.glob("run-*.wandb")).read_bytes()
                         for run in (job / "wandb").glob("offline-run-*")}
    return out


@pytest.mark.e2e
def test_wandb_one_run_per_job_folder_grouped_by_sweep(tmp_path, cache_dir):
    """A job run again in its own folder (a requeued SLURM task) continues its W&B run; the same
    grid in a new sweep folder is a new set of runs, even with equal settings."""
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    first, second = tmp_path / "first", tmp_path / "second"
    # two jobs; job 0 again in its folder; job 0's settings in a new sweep folder
    for d, grid in ((first, "bits=1,2"), (first, "bits=1"), (second, "bits=1")):
        proc = run_cli("-m", *JOB, grid, "logger=wandb", f"hydra.sweep.dir={d}", f"results_dir={tmp_path / 'res'}",
                       env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = wandb_records(first), wandb_records(second)
    assert len(a) == 2 and all(len(runs) == 1 for runs in a.values())  # re-run in its folder: the same W&B run
    ids_a, ids_b = {next(iter(r)) for r in a.values()}, {next(iter(r)) for r in b.values()}
    assert len(ids_a) == 2 and len(ids_b) == 1 and not ids_a & ids_b  # one run per job; a new sweep folder, new runs
    records = {job: next(iter(runs.values())) for job, runs in a.items()}
    group = str(first).replace("/", "_").strip("_").encode()
    assert all(group in record for record in records.values())  # one group per sweep
    assert b"bits=1" in records["0"] and b"bits=2" in records["1"]  # named from overrides, tagged


def slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s.startswith(("idle", "mixed", "alloc")) for s in proc.stdout.split())


def require_slurm():
    if slurm_up():
        return
    message = "no SLURM cluster is up: start one with `sudo scripts/slurm/start.sh`"
    if os.environ.get("CI"):
        pytest.fail(message + " (.ci/run starts it; CI must run the SLURM sweep)")
    pytest.skip(message)


@pytest.mark.e2e
def test_slurm_grid_end_to_end(tmp_path, cache_dir):
    require_slurm()
    sweep_dir = tmp_path / "sweep"
    # one method: two array tasks, both at once on the two-core node (the local grid covers method x bits)
    sweep(sweep_dir, "logger=none", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
          "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20", grid=["method=qcs_sgm", "bits=1,2"])
    metrics = job_metrics(sweep_dir)
    assert len(metrics) == 2
    check_aggregate(sweep_dir, metrics)
    logs = list((sweep_dir / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # two SLURM array tasks ran them


@pytest.mark.e2e
def test_slurm_preempted_job_is_requeued_and_finishes(tmp_path, cache_dir):
    """Preempt a running SLURM task the way SLURM does (submitit's own test signal): submitit
    checkpoints and requeues it, and the requeued task reuses the images already stored."""
    require_slurm()
    sweep_dir, results = tmp_path / "sweep", tmp_path / "results"
    # four images in batches of two, slow enough (about 2 s a batch) to be caught after the first
    job = [*TINY, "method.num_levels=200", "method.steps_per_level=3", "num_images=4", "batch_size=2"]
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *job, "bits=1", "logger=none", "hydra/launcher=slurm",
           "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20",
           f"hydra.sweep.dir={sweep_dir}", f"results_dir={results}"]
    sweep_proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(results.rglob("images/*.pt")):
            assert sweep_proc.poll() is None and time.monotonic() < deadline, "the job finished before it was preempted"
            time.sleep(0.2)
        (job_id,) = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.name[0].isdigit()]
        # what SLURM sends on preemption: SIGTERM (submitit ignores it), then USR2 (checkpoint, requeue)
        for sig in ("SIGTERM", "USR2"):
            subprocess.run(["scancel", "--signal", sig, job_id], check=True)
        _, stderr = sweep_proc.communicate(timeout=400)
    finally:
        sweep_proc.kill()
    assert sweep_proc.returncode == 0, stderr[-4000:]
    log = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*_log.*"))
    assert "this job is preempted" in log and "Exiting gracefully after preemption" in log
    metrics = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert metrics["num_images"] == 4 and metrics["num_diverged"] == 0
    assert metrics["num_resumed"] == 2  # the requeued task kept the stored batch and did the other
    assert len(list(results.rglob("images/*.pt"))) == 4


@pytest.mark.fast
def test_batches_to_run():
    from qcsbench.store import batches_to_run

    done = {(0, 0): None, (1, 0): None, (4, 0): None}
    assert batches_to_run(6, 2, done, coupled=False) == [[(2, 0), (3, 0)], [(5, 0)]]
    assert batches_to_run(6, 2, done, coupled=True) == [[(2, 0), (3, 0)], [(4, 0), (5, 0)]]
    assert batches_to_run(6, 4, {(i, 0): None for i in range(6)}, coupled=False) == []
    # two samples: an image's samples one after the other; coupled, each batch of images once per sample
    done = {(0, 0): None, (0, 1): None, (1, 0): None}
    assert batches_to_run(3, 2, done, coupled=False, num_samples=2) == [[(1, 1), (2, 0)], [(2, 1)]]
    assert batches_to_run(3, 2, done, coupled=True, num_samples=2) == [[(0, 1), (1, 1)], [(2, 0)], [(2, 1)]]


@pytest.mark.e2e
def test_optuna_search_runs_trials_and_reports_the_best(tmp_path, cache_dir):
    """hparams_search=qcs_sgm_step_lr, shrunk to two trials: each trial returns its mean PSNR
    (a float), and the best of them is what Optuna reports."""
    sweep_dir = tmp_path / "optuna"
    proc = run_cli("hparams_search=qcs_sgm_step_lr", "hydra.sweeper.n_trials=2", *JOB, "logger=none",
                   f"hydra.sweep.dir={sweep_dir}", f"results_dir={tmp_path / 'results'}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    trials = [json.loads((sweep_dir / str(i) / "metrics.json").read_text()) for i in range(2)]
    steps = [yaml.safe_load((sweep_dir / str(i) / "config.yaml").read_text())["method"]["step_lr"] for i in range(2)]
    assert all(1e-5 <= s <= 2e-4 for s in steps) and steps[0] != steps[1]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t["psnr_mean"] for t in trials))
    winner = max((0, 1), key=lambda i: trials[i]["psnr_mean"])
    assert best["best_params"]["method.step_lr"] == pytest.approx(steps[winner])


@pytest.mark.in_process
def test_optimized_metric_is_checked_and_returned_as_a_float(make_cfg, monkeypatch):
    from qcsbench import cli, runner
    from qcsbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optimized_metric=psnr is not allowed: use one of psnr_mean, psnr_std"):
        cli.optimized_metric(make_cfg("optimized_metric=psnr"))
    monkeypatch.setattr(runner, "run", lambda cfg: {"psnr_mean": 14.5, "ssim_mean": None})
    assert cli.task(make_cfg()) == 14.5 and isinstance(cli.task(make_cfg()), float)
    assert math.isnan(cli.task(make_cfg("optimized_metric=ssim_mean")))  # every image diverged
