"""The test images on record: manifests pick them, a fingerprint names them, the aggregation
refuses to average runs on different ones, and published numbers are set beside ours."""
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import TINY
from qcsbench import aggregation
from qcsbench.aggregation import published
from qcsbench.data import ImageFolder
from qcsbench.errors import ConfigError
from qcsbench.runner import run
from test_aggregate import config, numbers, write_run


def write_images(folder, names, size=8, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / name)


@pytest.mark.fast
def test_a_manifest_picks_the_listed_files_in_its_order(tmp_path):
    write_images(tmp_path / "images", ["a.png", "b.png", "00000/00007.png", "00001/00007.png", "01000/01002.png",
                                       "c.png"])
    # FFHQ's own layout nests 01002.png in 01000/: a bare name found once anywhere is that file
    (tmp_path / "list.txt").write_text("# a comment\nc.png\n00001/00007.png\n\na.png\n01002.png\n")
    data = ImageFolder(tmp_path / "images", image_size=8, channels=1, manifest=str(tmp_path / "list.txt"))
    assert [data.source(i) for i in range(len(data))] == ["c.png", "00001/00007.png", "a.png", "01000/01002.png"]
    whole = ImageFolder(tmp_path / "images", image_size=8, channels=1)
    assert np.array_equal(data[0].numpy(), whole[[whole.source(i) for i in range(6)].index("c.png")].numpy())
    (tmp_path / "other.txt").write_text("a.png\n00007.png\nb.png\n")  # a bare name held twice is not one file
    data = ImageFolder(tmp_path / "images", image_size=8, channels=1, manifest=str(tmp_path / "other.txt"))
    data.check(range(1))  # a run of the first image does not need the others
    with pytest.raises(ConfigError, match=r"lists 1 image file\(s\) this run uses that .* does not hold \(the first: "
                                          r"00007.png\)"):
        data.check(range(3))
    with pytest.raises(ConfigError, match=r"\(the first: 00007.png\)"):
        data[1]


@pytest.mark.fast
def test_the_shipped_manifests_name_the_documented_images():
    from qcsbench.data.image_folder import MANIFESTS

    def names(stem):
        return [n for n in (MANIFESTS / f"{stem}.txt").read_text().splitlines() if not n.startswith("#")]
    assert names("ffhq_holdout_1000") == [f"{i:05d}.png" for i in range(1000)]
    assert names("celeba_test") == [f"{i:06d}.jpg" for i in range(182638, 202600)]  # partition 2 of CelebA
    val = names("ffhq_val_100")
    assert len(val) == 100 and len(set(val)) == 100 and val[0] == "69007.png"


def image_folder_run(make_cfg, root, out, *overrides):
    """A tiny run on an image folder: two BIHT steps, 8 x 8 gray images, 20 measurements."""
    cfg = make_cfg(*TINY, "dataset=image_folder", f"dataset.root={root}", "dataset.image_size=8",
                   "dataset.channels=1", "method=biht", "method.iterations=2", "prior.n_components=2", "m=20", "num_images=3", "resume=false",
                   f"+run_dir={out}",
                   *overrides)
    return run(cfg)


@pytest.mark.in_process
def test_the_fingerprint_follows_pixels_and_file_names_not_batches(make_cfg, tmp_path):
    root = tmp_path / "data"
    write_images(root / "train", [f"t{i}.png" for i in range(4)])
    write_images(root / "test", ["a.png", "b.png", "c.png"], seed=1)
    whole = image_folder_run(make_cfg, root, tmp_path / "1", "batch_size=3")["image_fingerprint"]
    assert image_folder_run(make_cfg, root, tmp_path / "2", "batch_size=2")["image_fingerprint"] == whole
    assert (tmp_path / "1" / "test_images.txt").read_text() == "a.png\nb.png\nc.png\n"
    assert json.loads((tmp_path / "1" / "metrics.json").read_text())["image_fingerprint"] == whole

    pixels = np.asarray(Image.open(root / "test" / "b.png")).copy()
    pixels[3, 4] ^= 1  # one pixel, one gray level
    Image.fromarray(pixels).save(root / "test" / "b.png")
    changed = image_folder_run(make_cfg, root, tmp_path / "3", "batch_size=3")["image_fingerprint"]
    assert changed != whole
    (root / "test" / "c.png").rename(root / "test" / "d.png")  # the same pixels under another name
    assert image_folder_run(make_cfg, root, tmp_path / "4", "batch_size=3")["image_fingerprint"] not in (whole, changed)


@pytest.mark.in_process
def test_a_missing_manifest_file_stops_the_run_in_one_sentence(make_cfg, tmp_path):
    root = tmp_path / "data"
    write_images(root / "train", ["t0.png"])
    write_images(root / "test", ["a.png", "b.png", "c.png"])
    (tmp_path / "list.txt").write_text("a.png\nmissing.png\nb.png\nc.png\n")
    with pytest.raises(ConfigError) as err:
        image_folder_run(make_cfg, root, tmp_path / "run", f"dataset.manifest={tmp_path / 'list.txt'}")
    assert str(err.value) == (f"dataset.manifest={tmp_path / 'list.txt'} lists 1 image file(s) this run uses that "
                              f"{root / 'test'} does not hold (the first: missing.png): put them there, or set "
                              "dataset.manifest=null to use every image in the folder.")
    assert not (tmp_path / "run").exists()  # stopped before any compute or file


def two_seeds(root, fingerprints):
    for seed, digest in enumerate(fingerprints):
        write_run(root / str(seed), config("qcs_sgm", 1, seed), dict(numbers(14.0 + seed, 1.0, 0.4),
                                                                     image_fingerprint=digest))


@pytest.mark.fast
def test_runs_on_different_test_images_are_not_averaged_unless_asked(tmp_path, monkeypatch, capsys):
    two_seeds(tmp_path / "same", ["aaaa", "aaaa"])
    assert aggregation.aggregate([tmp_path / "same"])["summary"].psnr_mean[0] == pytest.approx(14.5)
    two_seeds(tmp_path / "other", ["aaaa", "bbbb"])
    with pytest.raises(ConfigError, match=r"^the runs of method=qcs_sgm were evaluated on different test images "
                                          r"\(image fingerprints aaaa, bbbb: .*--pool-images to average them\.$"):
        aggregation.aggregate([tmp_path / "other"])
    assert aggregation.aggregate([tmp_path / "other"], pool_images=True)["summary"].psnr_mean[0] == pytest.approx(14.5)

    import runpy
    monkeypatch.setattr("sys.argv", ["aggregate.py", str(tmp_path / "other")])
    with pytest.raises(SystemExit) as code:
        runpy.run_path("scripts/aggregate.py", run_name="__main__")
    assert code.value.code == 2 and capsys.readouterr().err.startswith("error: the runs of method=qcs_sgm were")


def preset_run(folder, method, n_over_m, seed, psnr, experiment="onebit_ffhq256_table"):
    cfg = dict(config(method, 1, seed), n_over_m=n_over_m)
    write_run(folder, cfg, dict(numbers(psnr, 1.0, 0.5), lpips_mean=0.4, lpips_std=0.1))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {
        "experiment": experiment, "method": method}}}}))


@pytest.mark.fast
def test_published_numbers_are_set_beside_the_matching_runs(tmp_path):
    rows = {r["method"] + str(r["n_over_m"]): r for r in published.table("onebit_ffhq256_table")}
    assert rows["qcs_sgm16"]["psnr"] == 18.11 and rows["daps32"]["ssim"] is None
    assert {r["method"] for r in rows.values()} == {"pnp_onebit", "diff_onebit", "sim_dmis", "qcs_sgm", "dps", "daps",
                                                    "diffpir"}
    sweep = tmp_path / "sweep"
    preset_run(sweep / "0", "qcs_sgm", 16, 0, 18.0)
    preset_run(sweep / "1", "qcs_sgm", 16, 1, 19.0)
    preset_run(sweep / "2", "qcs_sgm", 64, 0, 15.0)  # a setting the paper did not publish
    preset_run(sweep / "3", "dps", 16, 0, 14.0)
    result = aggregation.aggregate([sweep])
    summary = result["summary"].set_index(["method", "n_over_m"])
    ours = summary.loc[("qcs_sgm", "16")]
    assert ours.published_psnr == 18.11 and ours.difference_psnr == pytest.approx(18.5 - 18.11)
    assert ours.published_lpips == 0.52 and ours.difference_lpips == pytest.approx(0.4 - 0.52)
    assert ours.published_source.startswith("PnP-OneBit preprint, Table 1")
    assert summary.loc[("dps", "16")].difference_ssim == pytest.approx(0.5 - 0.52)
    assert np.isnan(summary.loc[("qcs_sgm", "64")].published_psnr)
    table = result["table"]
    assert "### Published beside ours" in table and "| method=qcs_sgm, n_over_m=16 | 18.50 | 18.11 | +0.39 |" in table
    assert "n_over_m=64 |" not in table.split("### Published beside ours")[1]
    assert "published_psnr" in (sweep / "summary.csv").read_text()


@pytest.mark.fast
def test_runs_of_no_published_preset_get_no_published_columns(tmp_path):
    preset_run(tmp_path / "0", "qcs_sgm", 16, 0, 18.0, experiment="qcs_sgm_mnist_1bit")
    result = aggregation.aggregate([tmp_path])
    assert "published_psnr" not in result["summary"] and "Published" not in result["table"]
