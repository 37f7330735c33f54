"""Progress lands in log files: one line per step of percent in each loop, one per batch."""
import logging
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, TINY
from qcsbench import progress


@pytest.mark.fast
def test_one_line_per_tenth_with_the_label_elapsed_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="qcsbench.progress")
    with progress.labelled("qcs_sgm images 0-3"):
        assert list(progress.steps(list(range(40)), "langevin")) == list(range(40))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10  # 4, 8, ..., 40 of 40 steps
    assert lines[0].startswith("qcs_sgm images 0-3: 10% (4/40 steps), elapsed ")
    assert lines[-1].startswith("qcs_sgm images 0-3: 100% (40/40 steps)") and "ETA 0 s" in lines[-1]


@pytest.mark.fast
def test_unlabelled_loop_uses_its_own_name_and_disabled_is_quiet(caplog):
    caplog.set_level(logging.INFO, logger="qcsbench.progress")
    list(progress.steps([1, 2, 3], "hqs", enabled=False))
    assert caplog.records == []
    list(progress.steps([1, 2, 3], "hqs"))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["hqs"] * 3  # 33, 67, 100 %


@pytest.mark.fast
def test_every_update_mode_and_durations(caplog):
    caplog.set_level(logging.INFO, logger="qcsbench.progress")
    tracker = progress.Progress(16, "dps, all images", unit="images", every=0, bar=False)
    for _ in range(4):
        tracker.update(4)
    assert [r.getMessage().split(",")[1] for r in caplog.records] == [
        " all images: 25% (4/16 images)", " all images: 50% (8/16 images)", " all images: 75% (12/16 images)",
        " all images: 100% (16/16 images)"]
    assert progress.duration(59.4) == "59 s" and progress.duration(125) == "2 min 05 s"
    assert progress.duration(3 * 3600 + 7 * 60) == "3 h 07 min"


@pytest.mark.e2e
def test_a_run_writing_to_a_file_shows_progress_lines(tmp_path, cache_dir):
    """As in a batch job: stdout and stderr go to a file, not a terminal."""
    log_file = tmp_path / "job.out"
    with open(log_file, "w") as out:
        proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *TINY, "method.progress=true",
                               "method.num_levels=10", "num_images=2", "batch_size=1", f"hydra.run.dir={tmp_path / 'run'}",
                               f"results_dir={tmp_path / 'results'}"],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ), timeout=300)
    text = log_file.read_text()
    assert proc.returncode == 0, text[-3000:]
    for first in (0, 1):
        assert len(re.findall(rf"qcs_sgm images {first}-{first}: \d+% \(\d+/10 steps\), elapsed \d+ s, ETA \d+ s",
                              text)) == 10
    assert "qcs_sgm, all images: 50% (1/2 images)" in text and "qcs_sgm, all images: 100% (2/2 images)" in text
    assert "qcs_sgm, all images: 100%" in (tmp_path / "run" / "run.log").read_text()  # Hydra's log file too
