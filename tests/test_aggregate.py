"""Aggregation: fabricated run folders with known numbers, two seeds per setting, averaged."""
import json
import math
from types import SimpleNamespace

import pytest
import yaml

from conftest import ROOT
from qcsbench import aggregation
from qcsbench.errors import ConfigError

pytestmark = pytest.mark.fast

# (method, bits, seed) -> (psnr mean over images, psnr std over images, ssim mean)
NUMBERS = {
    ("qcs_sgm", 1, 0): (14.0, 1.0, 0.40), ("qcs_sgm", 1, 1): (15.0, 3.0, 0.44),
    ("qcs_sgm", 2, 0): (17.5, 2.0, 0.60), ("qcs_sgm", 2, 1): (16.5, 2.0, 0.58),
    ("dps", 1, 0): (12.0, 1.0, 0.30), ("dps", 1, 1): (12.4, 1.0, 0.31),
}


def config(method, bits, seed, **display):
    """A resolved config as the runner saves it; ``display`` varies the display-only keys."""
    return {
        "method": {"_target_": f"qcsbench.methods.{method}.X", "name": method, "step_lr": 5e-5 if method == "qcs_sgm"
                   else None, "progress": display.get("progress", False)},
        "quantizer": {"_target_": "qcsbench.channels.UniformQuantizer", "bits": bits, "noise_std": 0.05},
        "operator": {"_target_": "qcsbench.operators.gaussian", "seed": 0},
        "logger": {"_target_": display.get("logger", "qcsbench.tracking.NullLogger")},
        "bits": bits, "m": 200, "noise_std": 0.05, "seed": seed, "num_images": 4,
        "batch_size": display.get("batch_size", 4), "device": "cpu", "results_dir": "/somewhere",
        "cache_dir": "~/.cache/qcsbench", "resume": True,
    }


def numbers(psnr, psnr_std, ssim, diverged=0):
    ok = psnr is not None  # every image diverged: the runner writes null means
    return {"psnr_mean": psnr, "psnr_std": psnr_std, "ssim_mean": ssim, "ssim_std": 0.05 if ok else None,
            "nmse_mean": 0.5 if ok else None, "nmse_std": 0.1 if ok else None, "cosine_mean": 0.8 if ok else None,
            "cosine_std": 0.05 if ok else None, "psnr_scaled_mean": psnr + 1 if ok else None,
            "psnr_scaled_std": 1.0 if ok else None, "nfe": 40, "seconds": 2.0, "seconds_per_image": 0.5,
            "num_images": 4, "num_diverged": diverged, "num_resumed": 0, "method": "ignored", "bits": "ignored"}


def write_run(folder, cfg, metrics=None, resolved=True):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if resolved:
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def sweep(tmp_path):
    """The six finished runs (seed 1 with another logger and batch size), a failed run, a diverged one."""
    root = tmp_path / "sweep"
    for i, ((method, bits, seed), (p, s, q)) in enumerate(NUMBERS.items()):
        display = dict(logger="qcsbench.tracking.WandbLogger", batch_size=2, progress=True) if seed else {}
        write_run(root / str(i), config(method, bits, seed, **display), numbers(p, s, q))
    write_run(root / "6", config("dps", 2, 0), None, resolved=False)  # stopped before writing anything
    nan_run = numbers(None, None, None, diverged=4)
    write_run(root / "7", config("dps", 2, 1), nan_run)
    return root


def test_two_seeds_are_averaged_with_standard_errors(sweep):
    result = aggregation.aggregate([sweep], sweep / "out")
    runs, summary = result["runs"], result["summary"]
    assert len(runs) == 8 and runs.columns.is_unique
    assert not {"logger", "batch_size", "device", "results_dir", "cache_dir", "resume", "method.progress"} & set(runs)
    assert summary.attrs["settings"] == ["method", "bits"]  # display-only keys and seeds are not settings
    for (method, bits), cell in summary.set_index(["method", "bits"]).iterrows():
        if (method, bits) == ("dps", "2"):
            continue
        (p0, s0, q0), (p1, s1, q1) = NUMBERS[(method, int(bits), 0)], NUMBERS[(method, int(bits), 1)]
        # two values: the mean is their midpoint, the std (n - 1) is |a - b| / sqrt 2, so the s.e. is |a - b| / 2
        assert cell.psnr_mean == pytest.approx((p0 + p1) / 2) and cell.psnr_se == pytest.approx(abs(p0 - p1) / 2)
        assert cell.ssim_mean == pytest.approx((q0 + q1) / 2) and cell.ssim_se == pytest.approx(abs(q0 - q1) / 2)
        assert cell.psnr_image_std == pytest.approx((s0 + s1) / 2)
        assert cell.seeds == 2 and cell.runs == 2 and cell.failed == 0
    broken = summary.set_index(["method", "bits"]).loc[("dps", "2")]
    assert broken.runs == 2 and broken.failed == 1 and broken.images_diverged == 4 and math.isnan(broken.psnr_mean)


def test_tables_in_markdown_and_latex_mark_best_failed_and_diverged(sweep):
    result = aggregation.aggregate([sweep], sweep / "out")
    table = result["table"]
    assert "| method | bits=1 | bits=2 |" in table
    assert "| qcs_sgm | **14.50 ± 0.50** | **17.00 ± 0.50** |" in table  # best of its column in bold
    assert "| dps | 12.20 ± 0.20 | **diverged** |" in table
    assert "seed" not in table.split("- ")[0] and "batch_size" not in table and "<br>" not in table
    tex = (sweep / "out" / "table.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex
    assert r"qcs\_sgm & $\mathbf{14.50 \pm 0.50}$ & $\mathbf{17.00 \pm 0.50}$ \\" in tex


def test_a_layout_puts_named_settings_on_rows_and_columns_and_leaves_out_what_they_fix(tmp_path):
    """An ablation: two methods x two likelihoods x two bit depths; the method fixes its step size,
    so naming the method and the likelihood as rows and bits as columns leaves step_lr out."""
    root = tmp_path / "ablation"
    for i, (method, likelihood, bits) in enumerate((m, lik, b) for m in ("qcs_sgm", "dps") for lik in ("diagonal", "ep")
                                                    for b in (1, 2)):
        cfg = config(method, bits, 0)
        cfg["method"]["likelihood"] = likelihood
        write_run(root / str(i), cfg, numbers(10.0 + i, 1.0, 0.5))
    layout = aggregation.Layout(rows=("method", "method.likelihood"), columns=("bits",))
    table = aggregation.aggregate([root], tmp_path / "out", layout=layout)["table"]
    assert "| method, method.likelihood | bits=1 | bits=2 |" in table
    assert "| qcs_sgm, ep | 12.00 | 13.00 |" in table and "| dps, ep | **16.00** | **17.00** |" in table
    assert "step_lr" not in table
    default = aggregation.aggregate([root], tmp_path / "default")["table"]  # rows: methods; every other key: columns
    assert "| method | bits=1, method.likelihood=diagonal |" in default
    with pytest.raises(ConfigError, match="--columns prior is not a setting of these runs: use one of"):
        aggregation.aggregate([root], tmp_path / "bad", layout=aggregation.Layout(columns=("prior",)))


def test_plots_only_where_the_grid_has_points(sweep):
    result = aggregation.aggregate([sweep], sweep / "out")
    names = sorted(p.name for p in result["plots"])
    # bits varies, M does not: no PSNR-against-M plot and no fixed-budget plot
    assert names == ["psnr_vs_bits.pdf", "psnr_vs_bits.png", "ssim_vs_bits.pdf", "ssim_vs_bits.png"]
    assert all(p.stat().st_size > 1000 for p in result["plots"])


def test_wandb_builds_the_same_frame_from_each_runs_config(sweep):
    """A stand-in for wandb.Api(): runs that differ only in their seed stay two runs."""
    fake_runs = []
    for job in sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir()):
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        done = (job / "metrics.json").is_file()
        summary = json.loads((job / "metrics.json").read_text()) if done else {}
        fake_runs.append(SimpleNamespace(config=cfg, summary=summary, state="finished" if done else "crashed",
                                         url=f"https://wandb.example/{job.name}"))

    class FakeApi:
        def runs(self, path, filters):
            assert path == "me/qcsbench" and filters == {"group": "g"}
            return fake_runs

    from_files = aggregation.average_seeds(aggregation.find_runs([sweep]))
    from_wandb = aggregation.average_seeds(aggregation.from_wandb("me/qcsbench", "g", api=FakeApi()))
    assert from_wandb.equals(from_files)


def test_fixed_bit_budget_sweep_draws_only_the_budget_plot(tmp_path):
    """m follows bits (m = budget / bits, resolved in the saved config): one seed, so the error
    bars fall back to the per-image spread; no PSNR-against-M or -bits line has two points."""
    for i, bits in enumerate((1, 2, 3)):
        cfg = config("qcs_sgm", bits, 0)
        cfg.update(m=12288 // bits, bit_budget=12288)
        write_run(tmp_path / "sweep" / str(i), cfg, numbers(14.0 + bits, 1.0, 0.5))
    result = aggregation.aggregate([tmp_path / "sweep"], tmp_path / "out")
    assert sorted(p.name for p in result["plots"]) == ["bit_budget.pdf", "bit_budget.png"]
    assert "| method | bits=1, m=12288 | bits=2, m=6144 | bits=3, m=4096 |" in result["table"]
    assert "| qcs_sgm | 15.00 | 16.00 | 17.00 |" in result["table"]  # one seed: no s.e.; one row: no bold


def test_settings_are_the_ones_the_components_reported(tmp_path):
    """A run's columns come from metrics.json's ``components`` (what the built objects used), not from
    the config: the unquantized channel has no bit depth, whatever the config's top-level bits says."""
    cfg = config("qcs_sgm", 1, 0)
    cfg["quantizer"] = {"_target_": "qcsbench.channels.GaussianNoise", "noise_std": 0.05}
    reported = dict(numbers(14.0, 1.0, 0.4), components={
        "quantizer": {"name": "none", "noise_std": 0.05}, "operator": {"name": "gaussian", "m": 200, "seed": 0},
        "method": {"name": "qcs_sgm", "step_lr": 5e-5}})
    write_run(tmp_path / "0", cfg, reported)
    row = aggregation.find_runs([tmp_path]).iloc[0]
    assert row["quantizer"] == "none" and row["operator"] == "gaussian" and row["method"] == "qcs_sgm"
    assert row["bits"] is None and row["m"] == 200


def test_a_failed_run_is_counted_in_the_cell_of_its_setting_not_one_of_its_own(tmp_path):
    """A failed run reports no components, so its config names what it would have built
    (UniformQuantizer, not the "uniform" a finished run reports): it takes the names of a finished
    run made from the same config but its seed, keeps its own seed, and marks that cell (‡)."""
    components = {"quantizer": {"name": "uniform", "bits": 1, "noise_std": 0.05},
                  "operator": {"name": "gaussian", "m": 200, "seed": 0}}
    write_run(tmp_path / "s" / "0", config("qcs_sgm", 1, 0), dict(numbers(14.0, 1.0, 0.4), components=components))
    write_run(tmp_path / "s" / "1", config("qcs_sgm", 1, 1), None)  # stopped before metrics.json
    write_run(tmp_path / "s" / "2", config("qcs_sgm", 2, 1), None)  # no finished run of its config
    runs = aggregation.find_runs([tmp_path / "s"]).set_index("run")
    borrowed, alone = runs.loc[str((tmp_path / "s" / "1").resolve())], runs.loc[str((tmp_path / "s" / "2").resolve())]
    assert borrowed["quantizer"] == "uniform" and borrowed["status"] == "failed" and borrowed["seed"] == 1
    assert alone["quantizer"] == "UniformQuantizer"  # nothing to borrow from: its config's names
    result = aggregation.aggregate([tmp_path / "s"], tmp_path / "out")
    row = cell(result, bits=1)
    assert row["runs"] == 2 and row["failed"] == 1
    assert "14.00‡" in result["table"]


# ---------------------------------------------------------------- damaged, repeated and foreign sweeps

def finished(method, bits, seed, psnr, version="v1", result_id=None):
    """A finished run's metrics as the runner writes them: with its result id and code version."""
    return dict(numbers(psnr, 1.0, 0.5), result_id=result_id or f"{method}{bits}{seed}-{version}", code_version=version)


def cell(result, method="qcs_sgm", **where):
    summary = result["summary"]
    rows = summary[summary.method == method]
    for key, value in where.items():
        rows = rows[rows[key] == str(value)]
    (index,) = rows.index
    return rows.loc[index]


def test_a_folder_given_twice_or_linked_is_read_once(sweep, tmp_path):
    (tmp_path / "link").symlink_to(sweep, target_is_directory=True)
    once = aggregation.aggregate([sweep], tmp_path / "once")
    twice = aggregation.aggregate([sweep, sweep, tmp_path / "link"], tmp_path / "twice")
    assert len(twice["runs"]) == len(once["runs"]) == 8
    assert twice["summary"].drop(columns=[]).equals(once["summary"])
    assert "16 run folders were reached twice and read once" in twice["table"]


def test_a_rerun_of_the_same_result_ids_is_counted_once(tmp_path):
    """A sweep and its re-run after a crash (the README's advice) in one date folder: the re-run's
    runs resume the same result ids; averaging them as new seeds would halve the standard error."""
    for sweep in ("11-30-00", "12-40-00"):
        for seed, psnr in ((0, 14.0), (1, 15.0)):
            write_run(tmp_path / "day" / sweep / str(seed), config("qcs_sgm", 1, seed),
                      finished("qcs_sgm", 1, seed, psnr))
    result = aggregation.aggregate([tmp_path / "day"], tmp_path / "out")
    row = cell(result)
    assert row.runs == 4 and row.repeats == 2 and row.seeds == 2
    assert row.psnr_mean == pytest.approx(14.5) and row.psnr_se == pytest.approx(0.5)  # not 0.5 / sqrt 2 * ...
    assert "2 runs repeat a result id already counted" in result["table"]
    runs = result["runs"]
    assert runs.repeat_of.notna().sum() == 2


def test_code_versions_are_kept_apart_unless_pooled(tmp_path):
    write_run(tmp_path / "s" / "0", config("qcs_sgm", 1, 0), finished("qcs_sgm", 1, 0, 14.0, "aaa"))
    write_run(tmp_path / "s" / "1", config("qcs_sgm", 1, 1), finished("qcs_sgm", 1, 1, 15.0, "aaa"))
    write_run(tmp_path / "s" / "2", config("qcs_sgm", 1, 0), finished("qcs_sgm", 1, 0, 20.0, "bbb"))
    apart = aggregation.aggregate([tmp_path / "s"], tmp_path / "apart")
    assert "code_version" in apart["summary"].attrs["settings"]
    assert cell(apart, code_version="aaa").psnr_mean == pytest.approx(14.5)
    assert cell(apart, code_version="bbb").psnr_mean == pytest.approx(20.0)
    assert "kept apart" in apart["table"]
    pooled = aggregation.aggregate([tmp_path / "s"], tmp_path / "pooled", pool_versions=True)
    assert cell(pooled).psnr_mean == pytest.approx((14.0 + 15.0 + 20.0) / 3) and cell(pooled).runs == 3


# (what is written into the run folder, the reason runs.csv gives)
DAMAGE = [
    ({"metrics.json": '{"psnr_mean": 14.0, "ssim_m'}, "metrics.json cannot be read"),
    ({"metrics.json": '{"psnr_mean": NaN}'}, "its psnr_mean is nan, not a number"),
    ({"metrics.json": '{"psnr_mean": "high"}'}, "its psnr_mean is 'high', not a number"),
    ({"metrics.json": '{"psnr_mean": Infinity}'}, "its psnr_mean is inf"),
    ({"metrics.json": '{"psnr_mean": 14.0, "nfe": true}'}, "its nfe is True"),
    ({"metrics.json": '[14.0]'}, "its metrics are list, not an object"),
    ({"metrics.json": '{"psnr_mean": 14.0, "components": "gmm"}'}, "its components are not objects"),
    ({"metrics.json": '{"psnr_mean": 14.0, "components": {"method": 3}}'}, "its components are not objects"),
    ({"metrics.json": b"\xff\xfe\x00"}, "metrics.json cannot be read"),
    ({"config.yaml": "method: [unclosed", ".hydra/config.yaml": "bits: {"}, "config.yaml cannot be read"),
    ({"config.yaml": "- a list\n- not a mapping\n", ".hydra/config.yaml": "just text"}, "not a mapping"),
    ({"config.yaml": None, ".hydra/config.yaml": None}, "it has no config.yaml"),
]


def damage(folder, changes):
    for name, text in changes.items():
        path = folder / name
        if text is None:
            path.unlink()
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)


@pytest.mark.parametrize("changes,reason", DAMAGE)
def test_a_damaged_run_is_marked_failed_and_the_table_is_still_written(sweep, tmp_path, changes, reason):
    damage(sweep / "0", changes)  # qcs_sgm, bits 1, seed 0
    result = aggregation.aggregate([sweep], tmp_path / "out")
    runs = result["runs"].set_index("run")
    bad = runs.loc[str((sweep / "0").resolve())]
    assert bad.status == "failed" and reason in bad.problem and math.isnan(bad.psnr_mean)
    assert (tmp_path / "out" / "table.md").is_file() and "failed: " in result["table"]
    assert reason in (tmp_path / "out" / "runs.csv").read_text()
    if "config" not in reason and "mapping" not in reason:  # settings known: the cell shows the other seed only
        row = cell(result, bits=1)
        assert row.failed == 1 and row.psnr_mean == pytest.approx(15.0) and "‡" in result["table"]


def test_a_foreign_config_never_reads_the_environment(tmp_path, monkeypatch):
    """Hydra's copy of a run that stopped early, written elsewhere with interpolations: references
    and our own resolvers resolve; oc.env and every other resolver stay text."""
    monkeypatch.setenv("QCSBENCH_TEST_SECRET", "hunter2")
    cfg = config("qcs_sgm", 2, 0)
    cfg.update(bit_budget=400, m="${div:${bit_budget},${bits}}", results_dir="${oc.env:QCSBENCH_TEST_SECRET}",
               note="${oc.env:QCSBENCH_TEST_SECRET,fallback}", owner="${oc.decode:'${oc.env:QCSBENCH_TEST_SECRET}'}",
               copy="${note}", who="${pid:}", run_dir="${hydra:runtime.output_dir}",
               autocast="${oc.select:prior_autocast,none}")
    write_run(tmp_path / "s" / "0", cfg, None, resolved=False)
    write_run(tmp_path / "s" / "1", config("qcs_sgm", 2, 1), finished("qcs_sgm", 2, 1, 14.0))
    result = aggregation.aggregate([tmp_path / "s"], tmp_path / "out")
    text = "".join(p.read_text() for p in (tmp_path / "out").glob("*.csv")) + result["table"]
    assert "hunter2" not in text and "${oc.env:QCSBENCH_TEST_SECRET,fallback}" in text
    row = result["runs"].set_index("run").loc[str((tmp_path / "s" / "0").resolve())]
    assert row.m == 200 and row.status == "failed"  # ${div:} resolved: counted with its setting
    assert row.autocast == "none"  # oc.select reads the config only
    assert str(__import__("os").getpid()) not in str(row.who)


def test_the_script_prints_one_sentence_for_bad_folders_and_marks_damaged_runs(sweep, tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    script = str(ROOT / "scripts" / "aggregate.py")
    damage(sweep / "0", {"metrics.json": "{"})
    monkeypatch.setattr(sys, "argv", ["aggregate.py", str(sweep), "--out", str(tmp_path / "out")])
    runpy.run_path(script, run_name="__main__")
    out = capsys.readouterr()
    assert "| dps |" in out.out and "8 runs (2 failed)" in out.out
    assert "metrics.json cannot be read" in out.err and "Traceback" not in out.err
    for args, line in ([str(tmp_path / "nowhere")], f"error: {tmp_path / 'nowhere'} is not a folder"), \
                      ([str(tmp_path / "out")], "error: no runs found under"):
        monkeypatch.setattr(sys, "argv", ["aggregate.py", *args])
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(script, run_name="__main__")
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith(line) and err.count("\n") == 1


def test_random_damage_to_a_sweep_never_stops_the_table(tmp_path):
    """Settings and numbers replaced by values of the wrong kind, files truncated or not YAML, the
    folder given twice: every sweep still gives its table (a fixed seed, so a failure reproduces)."""
    import random

    odd = [None, "abc", [1, 2], {"x": 1}, float("nan"), -1, 0, True, "${oc.env:HOME}", 1e308, "", "???"]
    rng = random.Random(0)
    for trial in range(10):
        root = tmp_path / str(trial)
        for i in range(4):
            cfg = config(rng.choice(["qcs_sgm", "dps"]), rng.choice([1, 2]), i % 2)
            num = dict(numbers(14.0 + i, 1.0, 0.5), result_id=f"r{i % 3}", code_version=rng.choice("ab"))
            for _ in range(2):
                cfg[rng.choice(["method", "bits", "m", "seed", "num_images", "quantizer", "noise_std"])] = rng.choice(odd)
                num[rng.choice(["psnr_mean", "psnr_std", "num_diverged", "components", "result_id", "nfe"])] = \
                    rng.choice(odd)
            write_run(root / str(i), cfg, num)
            if rng.random() < 0.3:
                (root / str(i) / "metrics.json").write_text(rng.choice(["", "{", "null", "[]", "3"]))
            if rng.random() < 0.3:
                (root / str(i) / "config.yaml").write_text(rng.choice(["", ":", "[", "- 1", "a: !!python/object:os.system {}"]))
        result = aggregation.aggregate([root, root], root / "out", pool_versions=trial % 2 == 1)
        assert len(result["runs"]) == 4 and (root / "out" / "table.md").is_file()


def test_runs_with_several_samples_are_their_own_setting_with_their_own_columns(tmp_path):
    """num_samples=8 is a setting (another estimate), num_samples=1 the setting of the runs made before the
    key existed; the samples' own PSNR and their coverage are averaged over seeds and shown in the table."""
    root = tmp_path / "sweep"
    sampled = [dict(psnr_single_mean=13.0, psnr_single_std=1.0, coverage_mean=0.6, coverage_std=0.1),
               dict(psnr_single_mean=14.0, psnr_single_std=1.0, coverage_mean=0.7, coverage_std=0.1)]
    for seed in (0, 1):
        write_run(root / f"old{seed}", config("qcs_sgm", 1, seed), numbers(14.0 + seed, 1.0, 0.4))
        write_run(root / f"one{seed}", dict(config("qcs_sgm", 1, seed + 2), num_samples=1),
                  numbers(15.0, 1.0, 0.4))
        write_run(root / f"eight{seed}", dict(config("qcs_sgm", 1, seed), num_samples=8),
                  dict(numbers(16.0 + seed, 1.0, 0.5), **sampled[seed]))
    result = aggregation.aggregate([root], tmp_path / "out")
    summary = result["summary"].set_index("num_samples")
    assert result["summary"].attrs["settings"] == ["method", "num_samples"] and len(summary) == 2
    one, eight = summary.loc["1"], summary.loc["8"]
    assert one.runs == 4 and one.psnr_mean == pytest.approx(14.75) and math.isnan(one.psnr_single_mean)
    assert eight.psnr_mean == pytest.approx(16.5) and eight.psnr_single_mean == pytest.approx(13.5)
    assert eight.psnr_single_se == pytest.approx(0.5) and eight.coverage_mean == pytest.approx(0.65)
    table = result["table"]
    assert "### PSNR of one sample (dB)" in table and "13.50 ± 0.50" in table and "—" in table
    assert "### 90 % interval coverage" in table
