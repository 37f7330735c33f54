"""What a user sees when the command line itself is wrong, or the disk is: one line ``error: ...``
and exit status 2, before any compute (or, for a disk that fills up, with the finished images
kept). Composition errors are checked in-process through ``cli.check_command_line`` (what
run.py, the installed command and scripts/train.py do before Hydra runs the task); a few go
through ``python run.py``."""
from __future__ import annotations

import errno
import pathlib

import pytest

from conftest import CONFIGS, TINY, run_cli
from qcsbench import cli
from qcsbench.errors import ConfigError
from qcsbench.runner import run

COMPOSITION = [
    (["method=foo"], "method=foo is not an option of method: use one of ald, biht, daps, diff_onebit, diffpir, dps, idm, "
                     "oneshot, pnp_dm, pnp_onebit, qcs_sgm, qcs_sgm_ep, qcs_sgm_plus, qcs_sgm_plus_diagonal, red_diff, "
                     "restoregrad, sim_dmis."),
    (["+experiment=foo"], "experiment=foo is not an option of experiment: use one of onebit_ffhq256_table,"),
    (["method=dps", "method.foo=1"], "method.foo is not a setting of method=dps: use one of name, num_levels,"),
    (["foo=1"], "foo is not a setting of the config: use one of dataset, prior,"),
    (["m=["], "m=[ cannot be read (no viable alternative at input '['): write key=value"),
    (["hydra/launcher=nope"], "hydra/launcher=nope is not an option of hydra/launcher: use one of basic, slurm,"),
    (["-m", "method=qcs_sgm,foo"], "method=foo is not an option of method"),  # each value of a sweep
    (["-m", "bits=1,2", "method=dps,qcs_sgm", "method.step_lr=1e-5"], "method.step_lr is not a setting of method=dps"),
    (["-m", "dataset=mnist,nope"], "dataset=nope is not an option of dataset"),
]


@pytest.mark.in_process
@pytest.mark.parametrize("argv,message", COMPOSITION)
def test_a_command_line_hydra_cannot_compose_is_one_sentence(argv, message):
    with pytest.raises(ConfigError) as err:
        cli.check_command_line(str(CONFIGS), "config", argv)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text and text.endswith(".")


@pytest.mark.in_process
@pytest.mark.parametrize("argv", [
    ["logger=none", "bits=2", "+experiment=qcs_sgm_mnist_1bit"],
    ["-m", "method=qcs_sgm,dps", "bits=1,2", "hydra/launcher=slurm"],
    ["--help"],
])
def test_a_good_command_line_passes(argv, tmp_path):
    cli.check_command_line(str(CONFIGS), "config", [*argv, f"hydra.run.dir={tmp_path}", f"hydra.sweep.dir={tmp_path}"])


@pytest.mark.in_process
def test_a_current_folder_nothing_can_be_written_in_stops_before_hydra_makes_the_run_folder(monkeypatch):
    monkeypatch.chdir("/proc")  # a folder no one, root included, can create files in
    with pytest.raises(ConfigError, match=r"^hydra.run.dir=outputs/runs/\S+ is not writable \(no file can be created in /proc"):
        cli.check_command_line(str(CONFIGS), "config", ["logger=none"])


@pytest.mark.e2e
@pytest.mark.parametrize("args,line", [
    (["method=foo"], "error: method=foo is not an option of method: use one of ald, biht, daps, diff_onebit, diffpir, "
                     "dps, idm, oneshot, pnp_dm, pnp_onebit, qcs_sgm, qcs_sgm_ep, qcs_sgm_plus, qcs_sgm_plus_diagonal, "
                     "red_diff, restoregrad, sim_dmis."),
    (["-m", "method.gamma=1,2", "+method.foo=1,2", "method=qcs_sgm,dps"], "error: method.gamma is not a setting of method"),
])
def test_on_the_command_line_one_line_exit_code_2(tmp_path, args, line):
    proc = run_cli(*args, "logger=none", f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                   f"results_dir={tmp_path / 'res'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(line)
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.e2e
def test_a_read_only_current_folder_is_one_line():
    proc = run_cli("logger=none", cwd="/proc")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: hydra.run.dir=outputs/runs/") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.in_process
def test_a_run_folder_that_fills_up_is_one_sentence_and_the_store_keeps_the_images(make_cfg, tmp_path, monkeypatch,
                                                                                    capsys):
    """The disk fills up when the run writes its results (per_image.csv): one line, exit status 2,
    and the same settings run again resume every image from the store."""
    run_dir = tmp_path / "run"
    write_text = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.parent == run_dir and self.name.startswith(".per_image.csv"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, *args, **kwargs)

    settings = [*TINY, "num_images=2", "batch_size=1", "method.num_levels=10", f"+run_dir={run_dir}"]
    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    with pytest.raises(SystemExit) as stop:
        cli.task(make_cfg(*settings))
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"error: the run folder {run_dir} could not be written (No space left on device: "
                           f"{run_dir / 'per_image.csv'}): the finished images are kept in results_dir=")
    assert "\n" not in line and not (run_dir / "metrics.json").exists()
    assert not list(run_dir.glob(".*.tmp"))  # no half-written file left beside the others
    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    again = run(make_cfg(*settings))
    assert again["num_resumed"] == 2 and (run_dir / "metrics.json").is_file()
