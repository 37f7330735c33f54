"""Results a researcher can trust: tied to the code that made them, stored safely, reported as they ran."""
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from conftest import ROOT, TINY
from qcsbench import result_keys, tracking
from qcsbench import store as store_module
from qcsbench.channels import Channel
from qcsbench.errors import ConfigError
from qcsbench.runner import run

# Two images, a short ladder: each in-process run takes a few seconds.
SMALL = [*TINY, "num_images=2", "batch_size=2", "method.num_levels=10"]


def stored(results, summary, index):
    return results / summary["result_id"] / "images" / f"{index:06d}.pt"


@pytest.mark.in_process
def test_store_files_are_small_readable_by_others_and_plain_data(make_cfg, tmp_path):
    results = tmp_path / "results"
    old = os.umask(0o022)
    try:
        summary = run(make_cfg(*SMALL, f"results_dir={results}", f"+run_dir={tmp_path / 'run'}"))
    finally:
        os.umask(old)
    path = stored(results, summary, 1)
    # 28 x 28 recovery and back-projection in float32 (6 KB) plus the row: not the batch's storage
    assert path.stat().st_size < 12_000
    record = torch.load(path, weights_only=True)
    assert record["index"] == 1 and record["recon"].shape == (1, 28, 28)
    for file in [path, tmp_path / "run" / "metrics.json", tmp_path / "run" / "per_image.csv"]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/qcsbench-store-exploit-ran"


@pytest.mark.in_process
def test_corrupt_or_crafted_store_entries_are_recomputed_with_a_warning(make_cfg, tmp_path, caplog):
    results = tmp_path / "results"
    args = [*SMALL, f"results_dir={results}"]
    first = run(make_cfg(*args, f"+run_dir={tmp_path / 'a'}"))
    stored(results, first, 0).write_bytes(stored(results, first, 0).read_bytes()[:300])  # truncated
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    torch.save({"index": 1, "payload": Exploit()}, stored(results, first, 1))  # runs code under weights_only=False
    again = run(make_cfg(*args, f"+run_dir={tmp_path / 'b'}"))
    assert not os.path.exists(MARKER)
    assert again["num_resumed"] == 0 and again["num_computed"] == 2
    assert "2 stored results in" in caplog.text and "could not be read" in caplog.text
    assert again["psnr_mean"] == pytest.approx(first["psnr_mean"], abs=1e-6)
    third = run(make_cfg(*args, f"+run_dir={tmp_path / 'c'}"))  # and the store is whole again
    assert third["num_resumed"] == 2 and third["seconds"] == 0 and third["seconds_per_image"] is None
    # it built no prior, and reports the one that computed its images (the aggregate groups by its ladder)
    assert third["components"]["prior"] == first["components"]["prior"] and "sigma_max" in first["components"]["prior"]


@pytest.mark.fast
def test_the_code_version_covers_the_package_and_not_the_bookkeeping(tmp_path):
    copy = tmp_path / "qcsbench"
    shutil.copytree(ROOT / "qcsbench", copy, ignore=shutil.ignore_patterns("__pycache__"))
    version = store_module.source_fingerprint(copy)
    assert version == store_module.code_version()
    tables = copy / "aggregation" / "tables.py"
    tables.write_text(tables.read_text() + "\n# a comment\n")
    assert store_module.source_fingerprint(copy) == version  # cannot change a number
    langevin = copy / "samplers" / "langevin.py"
    text = langevin.read_text()
    assert "math.sqrt(2 * a)" in text  # the constant this test changes
    langevin.write_text(text.replace("math.sqrt(2 * a)", "math.sqrt(1.9 * a)"))
    assert store_module.source_fingerprint(copy) != version


@pytest.mark.e2e
def test_a_change_to_the_mathematics_recomputes(make_cfg, tmp_path):
    """The same settings re-run with a changed constant in the sampler (a copy of the package,
    run as a user would with PYTHONPATH on it): nothing is reused, one warning line says why."""
    results = tmp_path / "results"
    first = run(make_cfg(*SMALL, f"results_dir={results}", f"+run_dir={tmp_path / 'a'}"))
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "qcsbench", copy / "qcsbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", copy / "configs")
    shutil.copy(ROOT / "run.py", copy / "run.py")
    langevin = copy / "qcsbench" / "samplers" / "langevin.py"
    text = langevin.read_text()
    assert "math.sqrt(2 * a)" in text  # the constant this test changes
    langevin.write_text(text.replace("math.sqrt(2 * a)", "math.sqrt(1.5 * a)"))
    env = dict(os.environ, PYTHONPATH=str(copy))
    proc = subprocess.run([sys.executable, str(copy / "run.py"), *SMALL, f"results_dir={results}",
                           f"hydra.run.dir={tmp_path / 'b'}"], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    changed = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert changed["num_resumed"] == 0 and changed["code_version"] != first["code_version"]
    assert changed["psnr_mean"] != first["psnr_mean"]
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "made by other code" in line]
    assert len(warnings) == 1 and f"2 earlier results for these settings were made by other code (version " \
        f"{first['code_version']})" in warnings[0]
    again = run(make_cfg(*SMALL, f"results_dir={results}", f"+run_dir={tmp_path / 'c'}"))  # the original code
    assert again["num_resumed"] == 2 and again["psnr_mean"] == first["psnr_mean"]


@pytest.mark.e2e
def test_two_simultaneous_runs_get_their_own_folders_and_compute_each_image_once(tmp_path, cache_dir):
    results = tmp_path / "results"
    args = [sys.executable, str(ROOT / "run.py"), *SMALL, f"results_dir={results}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    folders = sorted((tmp_path / "outputs" / "runs").glob("*/*_qcs_sgm_1bit_m200"))
    assert len(folders) == 2
    summaries = [json.loads((f / "metrics.json").read_text()) for f in folders]
    assert sorted(s["num_computed"] for s in summaries) == [0, 2]  # the second waited, then reused
    assert summaries[0]["psnr_mean"] == summaries[1]["psnr_mean"]
    (result_dir,) = results.iterdir()
    assert sorted(p.name for p in (result_dir / "images").iterdir()) == ["000000.pt", "000001.pt"]


@pytest.mark.in_process
def test_reported_settings_are_the_built_components(make_cfg):
    """quantizer=logistic takes the top-level noise_std and has no bits; quantizer=none has no bits."""
    cfg = make_cfg("quantizer=logistic", "noise_std=0.1")
    assert instantiate(cfg.quantizer).describe() == dict(name="logistic", noise_std=0.1, temperature=0.1)
    assert "bits" not in instantiate(make_cfg("quantizer=none").quantizer).describe()
    method = instantiate(make_cfg("method=qcs_sgm_plus", "method.ep_max_iter=7").method).describe()
    assert method["name"] == "qcs_sgm_plus" and method["ep_max_iter"] == 7 and "progress" not in method
    op = instantiate(make_cfg("operator=ill_conditioned", "operator.kappa=10").operator, shape=[1, 28, 28], m=50)
    assert op.describe() == dict(name="ill_conditioned", m=50, n=784, seed=0, kappa=10.0)


@pytest.mark.fast
def test_wandb_run_id_follows_the_run_folder(tmp_path):
    a = tracking.wandb_run_id(tmp_path / "job0", "abc-1")
    assert a == tracking.wandb_run_id(tmp_path / "x" / ".." / "job0", "abc-1")  # a requeued job: same folder
    assert a != tracking.wandb_run_id(tmp_path / "job1", "abc-1")  # a new folder: a new run
    assert a != tracking.wandb_run_id(tmp_path / "job0", "abc-2")


@pytest.mark.in_process
def test_a_corrupt_gmm_cache_is_refitted_with_a_warning(tmp_path, caplog):
    from qcsbench.data import embedded_mnist
    from qcsbench.priors import fitted_gmm

    train = embedded_mnist("train").batch(range(100))
    fitted_gmm(train, 2, max_train=100, max_iter=5, cache_dir=str(tmp_path))
    (cache,) = tmp_path.glob("gmm-*.pt")
    good = cache.read_bytes()
    cache.write_bytes(good[:1000])
    prior = fitted_gmm(train, 2, max_train=100, max_iter=5, cache_dir=str(tmp_path))
    assert "cannot be read" in caplog.text
    assert prior.means.shape == (2, 784) and cache.stat().st_size == len(good)


# ------------------------------------------------------------------ results keyed by contents, verified on load

def digit_folder(root, digits):
    """A flat image folder of MNIST test digits (28 x 28 gray PNGs) named 0.png, 1.png, ..."""
    import numpy as np
    from PIL import Image

    from qcsbench.data import embedded_mnist

    root.mkdir(parents=True, exist_ok=True)
    images = embedded_mnist("test").images
    for i, d in enumerate(digits):
        Image.fromarray(np.asarray(images[d, 0])).save(root / f"{i}.png")


FOLDER = ["method=biht", "method.iterations=30", "method.progress=false", "prior=ncsn_mnist", "logger=none",
          "dataset=image_folder", "dataset.image_size=28", "dataset.channels=1", "batch_size=2"]


@pytest.mark.in_process
def test_replaced_images_are_recomputed_and_more_images_resume(make_cfg, tmp_path, caplog):
    """The issue's reproduction: the images of an image_folder root replaced and the run repeated.
    Only the changed image is recomputed; the same experiment with more images resumes the rest."""
    root = tmp_path / "images"
    digit_folder(root, [0, 1, 2])
    args = [*FOLDER, f"dataset.root={root}", f"results_dir={tmp_path / 'results'}"]
    first = run(make_cfg(*args, "num_images=2", f"+run_dir={tmp_path / 'a'}"))
    more = run(make_cfg(*args, "num_images=3", f"+run_dir={tmp_path / 'b'}"))
    assert first["num_computed"] == 2 and more["num_resumed"] == 2 and more["result_id"] == first["result_id"]
    digit_folder(root, [0, 7, 2])  # image 1 replaced in place
    changed = run(make_cfg(*args, "num_images=3", f"+run_dir={tmp_path / 'c'}"))
    assert changed["num_resumed"] == 2 and changed["num_computed"] == 1
    assert "1 stored results in" in caplog.text and "computed from other images than the dataset now holds" in caplog.text
    fresh = run(make_cfg(*args, "num_images=3", "resume=false", f"+run_dir={tmp_path / 'd'}"))
    assert changed["psnr_mean"] == fresh["psnr_mean"] != more["psnr_mean"]
    saved = torch.load(tmp_path / "c" / "recon.pt", weights_only=True)
    again = torch.load(tmp_path / "d" / "recon.pt", weights_only=True)
    assert torch.equal(saved["truth"], again["truth"]) and torch.equal(saved["recon"], again["recon"])


@pytest.mark.in_process
def test_an_edited_or_foreign_record_is_recomputed_with_a_warning(make_cfg, tmp_path, caplog):
    """Records that load cleanly (weights only) but hold another image's fingerprint, an edited
    metrics row, or a recovery of the wrong shape are recomputed; the numbers are the true ones."""
    results = tmp_path / "results"
    args = [*SMALL, "num_images=4", "batch_size=4", f"results_dir={results}"]
    first = run(make_cfg(*args, f"+run_dir={tmp_path / 'a'}"))
    edits = {0: lambda r: r["row"].update(psnr=r["row"]["psnr"] + 5.0),
             1: lambda r: r.update(image="0123456789abcdef"),
             2: lambda r: r.update(recon=torch.zeros(3)),
             3: lambda r: r["row"].update(status="diverged", psnr=None)}
    for index, edit in edits.items():
        record = torch.load(stored(results, first, index), weights_only=True)
        edit(record)
        torch.save(record, stored(results, first, index))
    again = run(make_cfg(*args, f"+run_dir={tmp_path / 'b'}"))
    assert again["num_resumed"] == 0 and again["psnr_mean"] == first["psnr_mean"]
    assert "1 stored results in" in caplog.text and "computed from other images" in caplog.text
    assert "3 stored results in" in caplog.text and "hold a metrics row that their stored recovery does not give" \
        in caplog.text
    third = run(make_cfg(*args, f"+run_dir={tmp_path / 'c'}"))
    assert third["num_resumed"] == 4 and third["psnr_mean"] == first["psnr_mean"]


@pytest.mark.fast
def test_the_key_holds_checkpoint_contents_not_paths(tmp_path, monkeypatch):
    """Overwritten in place: a new key. The same bytes elsewhere: the same key. A big file is
    hashed once (size and mtime unchanged), a diffusers folder by the files the prior reads."""
    from qcsbench import fingerprint

    calls = []
    real = fingerprint.sha256_of
    monkeypatch.setattr(fingerprint, "sha256_of", lambda path: calls.append(str(path)) or real(path))

    def key(prior, cache="cache"):
        config = dict(prior=prior, dataset=dict(_target_="x", root="/data/somewhere"), cache_dir=str(tmp_path / cache))
        return store_module.result_key(config, None, fingerprint.inputs(config))

    (tmp_path / "a.pt").write_bytes(b"weights one")
    first = key(dict(checkpoint=str(tmp_path / "a.pt")))
    assert str(tmp_path) not in json.dumps(first) and "root" not in first["dataset"]
    assert key(dict(checkpoint=str(tmp_path / "a.pt"))) == first and len(calls) == 1  # the digest was cached
    (tmp_path / "b.pt").write_bytes(b"weights one")
    assert key(dict(checkpoint=str(tmp_path / "b.pt"))) == first  # moved or copied: the same result
    (tmp_path / "a.pt").write_bytes(b"weights two")  # retrained in place (same size)
    os.utime(tmp_path / "a.pt", ns=(1, 1))
    assert key(dict(checkpoint=str(tmp_path / "a.pt"))) != first
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text("{}")
    (folder / "model_index.json").write_text("{}")
    one = key(dict(path=str(folder)))
    (folder / "vae").mkdir()
    (folder / "vae" / "weights.bin").write_bytes(b"a part of the pipeline no prior reads")
    assert key(dict(path=str(folder))) == one
    (folder / "unet" / "config.json").write_text('{"sample_size": 32}')
    assert key(dict(path=str(folder))) != one
    with pytest.raises(ConfigError, match="holds no config.json"):  # not a model folder: no walk through it
        key(dict(path=str(folder / "vae")))
    (tmp_path / "cache" / "digests.json").write_text("[not json")  # a damaged digest cache: hashed again
    assert key(dict(checkpoint=str(tmp_path / "b.pt"))) == first


@pytest.mark.fast
def test_a_gmm_cache_that_is_not_this_fit_is_refitted(tmp_path, caplog):
    """An edited mean, or the cache file of another fit under this fit's name: refitted, never used."""
    from qcsbench.data import embedded_mnist
    from qcsbench.priors import fitted_gmm

    train = embedded_mnist("train").batch(range(100))[:, :, 10:18, 10:18].contiguous()  # 64 pixels: fits fast
    honest = fitted_gmm(train, 2, max_train=100, max_iter=5, cache_dir=str(tmp_path))
    (cache,) = tmp_path.glob("gmm-*.pt")
    state = torch.load(cache, weights_only=True)
    state["means"] = state["means"] + 0.1
    torch.save(state, cache)
    prior = fitted_gmm(train, 2, max_train=100, max_iter=5, cache_dir=str(tmp_path))
    assert "is not this fit" in caplog.text and torch.equal(prior.means, honest.means)
    other = tmp_path / "other"
    fitted_gmm(train, 3, max_train=100, max_iter=5, cache_dir=str(other))
    (foreign,) = other.glob("gmm-*.pt")
    cache.write_bytes(foreign.read_bytes())
    caplog.clear()
    prior = fitted_gmm(train, 2, max_train=100, max_iter=5, cache_dir=str(tmp_path))
    assert "is not this fit" in caplog.text and prior.means.shape == (2, 64) and torch.equal(prior.means, honest.means)


@pytest.mark.fast
@pytest.mark.parametrize("code", ["ENOLCK", "EOPNOTSUPP"])
def test_a_file_system_without_locks_runs_unlocked_with_a_warning(tmp_path, monkeypatch, caplog, code):
    import errno
    import fcntl

    def refuse(f, op):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(fcntl, "flock", refuse)
    store = store_module.ResultStore(tmp_path / "results", {"a": 1}, version="v")
    with store.locked() as held:
        held.save(dict(index=0, row={}, recon=torch.zeros(1)))
    assert "does not support file locks" in caplog.text and "Lustre needs -o flock" in caplog.text
    assert store.load([(0, 0)])[0, 0]["index"] == 0

    def broken(f, op):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError, match="I/O error"):
        with store.locked():
            pass


@pytest.mark.fast
def test_a_full_disk_while_saving_tensors_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    """torch.save on a path turns ENOSPC into RuntimeError("basic_ios::clear ..."); through a Python
    file object the OSError reaches the run's one-sentence handling, named by the file meant."""
    import builtins
    import errno

    from qcsbench import files

    real_open = builtins.open

    def full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".tmp"):
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk)
    with pytest.raises(OSError) as err:
        files.save_tensors(tmp_path / "recon.pt", dict(x=torch.zeros(100_000)))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "recon.pt")
    assert not list(tmp_path.iterdir())  # no half-written file left behind


class BatchWideChannel(Channel):
    """A throwaway channel that scales by its batch when told to: the store must ask it, not know it."""

    name = "batch_wide"

    @classmethod
    def couples_batch(cls, settings):
        return settings.get("scale") == "batch"


def a_config(**changes):
    """A resolved config as the runner hands it to the store, with ``changes`` at dotted keys."""
    config = dict(method=dict(_target_="qcsbench.methods.annealed_langevin.AnnealedLangevin", step_lr=5e-5,
                              weighting="norm_ratio", progress=True),
                  quantizer=dict(_target_="qcsbench.channels.UniformQuantizer", bits=1, range="image"),
                  prior=dict(_target_="qcsbench.priors.gmm.fitted", n_components=10, cache_dir="/cache"),
                  logger=dict(_target_="qcsbench.tracking.WandbLogger", mode="offline"), bits=1, m=200, seed=0,
                  num_images=4, batch_size=4, device="cpu", cache_dir="/cache", results_dir="/results",
                  resume=True, run_dir="/run", optimized_metric="psnr_mean", hydra=dict(job=dict(name="run")))
    for dotted, value in changes.items():
        group, _, name = dotted.partition(".")
        if name:
            config[group] = dict(config[group], **{name: value})
        else:
            config[dotted] = value
    return config


def test_keys_that_are_not_part_of_a_result_change_neither_its_key_nor_its_settings():
    """Each key of result_keys.NOT_RESULT changed alone: the same stored result; the same setting in
    the aggregation, except num_images and num_samples (another mean). A knob that is part of a result
    changes both. num_samples=1 is the setting of the runs made before the key existed."""
    from qcsbench.aggregation.runs import settings_of

    key, settings = store_module.result_key(a_config()), settings_of(a_config())
    for dotted in result_keys.NOT_RESULT:
        changed = a_config(**{dotted: "another"})
        assert store_module.result_key(changed) == key, dotted
        assert (settings_of(changed) == settings) == (dotted not in ("num_images", "num_samples")), dotted
    assert settings_of(a_config(num_samples=1)) == settings != settings_of(a_config(num_samples=8))
    for dotted in ["method.step_lr", "quantizer.range", "m", "seed"]:
        changed = a_config(**{dotted: "another"})
        assert store_module.result_key(changed) != key and settings_of(changed) != settings, dotted


def test_the_run_name_leaves_out_the_keys_that_are_not_part_of_a_result():
    """config.yaml names W&B runs from the overrides less exclude_keys (YAML cannot import the list)."""
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "config.yaml").read_text())
    excluded = config["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    assert sorted(excluded) == sorted(result_keys.RUN_NAME_EXCLUDED)


@pytest.mark.parametrize("changes,coupled", [
    ({}, False),
    ({"method.weighting": "norm_ratio_batch"}, True),  # QCS-SGM+'s batch-wide step weight
    ({"quantizer.range": "batch"}, True),  # the reference quantizer's batch-wide range
    ({"quantizer": dict(_target_=f"{__name__}.BatchWideChannel", scale="image")}, False),
    ({"quantizer": dict(_target_=f"{__name__}.BatchWideChannel", scale="batch")}, True),
])
def test_the_batch_size_is_part_of_a_result_where_the_method_or_channel_couples_the_batch(changes, coupled):
    key = store_module.result_key(a_config(**changes))
    assert store_module.batch_coupled(key) == coupled and ("batch_size" in key) == coupled
    assert (store_module.result_key(a_config(**changes, batch_size=8)) != key) == coupled


@pytest.mark.parametrize("target,word", [
    ("qcsbench.channels.UniformQuantizer", "3bit"), ("qcsbench.channels.GaussianNoise", "linear"),
    ("qcsbench.channels.LogisticChannel", "logistic"), (f"{__name__}.BatchWideChannel", "batch_wide"),
    ("qcsbench.channels.NoSuchChannel", "3bit"),  # a typo: the config check names it next
])
def test_a_run_folder_names_the_channel_by_the_word_its_class_gives(target, word):
    from qcsbench import resolvers

    assert resolvers.channel_label(target, 3) == word
