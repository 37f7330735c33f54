"""The helper scripts answer bad input as run.py does (one line ``error: ...``, exit status 2,
before any compute) and never print a stale table. Each script's main() runs in-process on
the argv a user would type; one end-to-end run of compare_methods (real run.py runs) is marked e2e."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import ROOT, TINY
from qcsbench import calibration, cli


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_line_exit_2(capsys, monkeypatch, module, argv) -> str:
    """Run the script's main on argv as its command line does; return its one error line."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    with pytest.raises(SystemExit) as stop:
        cli.one_sentence(module.main)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and err.endswith("."), err
    return err


# --- compare_methods ---------------------------------------------------------------------------

class FakeRunPy:
    """subprocess.run for run.py: writes the metrics.json of the bits it was given (PSNR = 10 * bits)."""

    def __init__(self, stderr=""):
        self.calls, self.stderr = [], stderr

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        args = dict(a.split("=", 1) for a in cmd[2:] if "=" in a)
        if self.stderr:
            return subprocess.CompletedProcess(cmd, 2, "", self.stderr)
        bits = int(args.get("bits", 1))
        metrics = dict(method=args["method"], m=int(args["m"]), psnr_mean=10.0 * bits, psnr_std=0.5,
                       psnr_scaled_mean=10.0 * bits, ssim_mean=0.5, nfe=1, seconds=1.0)
        run_dir = ROOT / args["hydra.run.dir"]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.mark.fast
def test_compare_methods_never_prints_the_numbers_of_other_overrides(monkeypatch, capsys, tmp_path):
    compare = script("compare_methods")
    fake = FakeRunPy()
    monkeypatch.setattr(compare.subprocess, "run", fake)
    tables = []
    for bits in (1, 3, 1):
        monkeypatch.setattr(sys, "argv", ["compare_methods.py", "--methods", "oneshot", "--m", "20",
                                          "--out", str(tmp_path), "--", f"bits={bits}"])
        compare.main()
        tables.append(capsys.readouterr().out)
    assert "| oneshot | 20 | 10.00 ± 0.50 |" in tables[0]
    assert "| oneshot | 20 | 30.00 ± 0.50 |" in tables[1]  # not the bits=1 numbers
    assert tables[2] == tables[0] and len(fake.calls) == 3  # every table comes from its own run (resumed by run.py)


@pytest.mark.fast
def test_compare_methods_stops_with_the_run_error_and_exit_status_2(monkeypatch, capsys, tmp_path):
    compare = script("compare_methods")
    monkeypatch.setattr(compare.subprocess, "run",
                        FakeRunPy("error: seed=-1 is not allowed: use a non-negative integer.\n"))
    err = one_line_exit_2(capsys, monkeypatch, compare,
                          ["--methods", "oneshot", "--m", "20", "--out", str(tmp_path), "--", "seed=-1"])
    assert err == "error: method=oneshot m=20: seed=-1 is not allowed: use a non-negative integer."


@pytest.mark.fast
@pytest.mark.parametrize("argv,message", [
    (["--methods", "foo"], "error: argument --methods: invalid choice: 'foo'"),
    (["--m", "0"], "error: argument --m: 0 is not allowed (use a positive integer)"),
    (["--m", "x"], "error: argument --m: x is not an integer"),
])
def test_compare_methods_bad_arguments(monkeypatch, capsys, argv, message):
    compare = script("compare_methods")
    monkeypatch.setattr(compare.subprocess, "run", None)  # nothing may run
    assert one_line_exit_2(capsys, monkeypatch, compare, argv).startswith(message)


@pytest.mark.e2e
def test_compare_methods_end_to_end_a_changed_override_changes_the_table(tmp_path, cache_dir, monkeypatch, capsys):
    """Two real runs of run.py (the session's cached mixture) from the script's main: bits=3 after
    bits=1 prints its own numbers."""
    compare = script("compare_methods")

    def table(bits):
        monkeypatch.setattr(sys, "argv", ["compare_methods.py", "--methods", "oneshot", "--m", "100", "--out",
                                          str(tmp_path / "compare"), "--", *TINY, f"bits={bits}",
                                          f"results_dir={tmp_path / 'results'}"])
        compare.main()
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("| oneshot")]

    one, three = table(1), table(3)
    assert len(one) == len(three) == 1 and one != three


# --- calibrate -----------------------------------------------------------------------------------

CALIBRATE = [
    (["--problems", "0x0"], "argument --problems: 0x0 is not a size NxM with positive integers"),
    (["--problems", "8by4"], "argument --problems: 8by4 is not a size NxM"),
    (["--samples", "0"], "argument --samples: 0 is not allowed (use an integer >= 2)"),
    (["--samples", "1"], "argument --samples: 1 is not allowed"),
    (["--exact", "1"], "argument --exact: 1 is not allowed"),
    (["--replicates", "0"], "argument --replicates: 0 is not allowed (use a positive integer)"),
    (["--sweeps", "0"], "argument --sweeps: 0 is not allowed (use an integer >= 2)"),
    (["--bits", "17"], "argument --bits: 17 is not allowed"), (["--bits", "-1"], "argument --bits: -1 is not allowed"),
    (["--kappa", "nan"], "argument --kappa: nan is not allowed"), (["--kappa", "0.5"], "argument --kappa: 0.5"),
    (["--noise-std", "0"], "argument --noise-std: 0 is not allowed (use a finite number > 0)"),
    (["--noise-std", "x"], "argument --noise-std: x is not a finite number"),
    (["--seed", "-1"], "argument --seed: -1 is not allowed"),
    (["--operators", "dct"], "argument --operators: invalid choice: 'dct'"),
    (["--methods", "idm"], "--methods idm: learned methods carry a network trained for 28 x 28 MNIST images"),
    (["--methods", "qcs_sgm", "restoregrad"], "--methods restoregrad: learned methods"),
    (["--methods", "qcs_sgm", "--", "method.foo=1"], "method.foo is not a setting of method=qcs_sgm: use one of name,"),
    (["--methods", "dps", "--", "+method.foo=1"], "method.foo is not a setting of method=dps"),
    (["--methods", "qcs_sgm", "--", "method.step_lr=-1"], "method.step_lr=-1 is not allowed: use a finite number > 0"),
    (["--methods", "qcs_sgm", "--", "method.sigma_max=0.001", "method.sigma_min=0.01"],
     "method.sigma_max=0.001 is not allowed with method.sigma_min=0.01"),
    (["--methods", "qcs_sgm", "--", "method.step_lr=["], "method.step_lr=[ cannot be read"),
    (["--methods", "qcs_sgm", "--", "bits=2"], "bits=2 is not a method override: after -- give method.KEY=VALUE only"),
    (["--methods", "qcs_sgm", "--", "method=dps"], "method=dps is not a method override"),
    (["--methods", "qcs_sgm", "--problems", "2x4", "--operators", "ill_conditioned"],
     "--problems holds no N x M with M <= N"),
]


@pytest.mark.in_process
@pytest.mark.parametrize("argv,message", CALIBRATE)
def test_calibrate_bad_arguments_stop_before_the_first_gibbs_sweep(monkeypatch, capsys, argv, message):
    calibrate = script("calibrate")

    def never(*args, **kwargs):
        raise AssertionError("the exact posterior was sampled before the bad argument was caught")
    monkeypatch.setattr(calibration, "exact_samples", never)
    assert one_line_exit_2(capsys, monkeypatch, calibrate, argv).startswith(f"error: {message}")


@pytest.mark.fast
def test_calibrate_runs_no_learned_method_by_default():
    calibrate = script("calibrate")
    assert calibrate.LEARNED == ["idm", "restoregrad"]
    assert calibrate.arguments([]).methods == [m for m in calibrate.METHODS if m not in ("idm", "restoregrad")]


# --- plot_training -------------------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("content,message", [
    ('{"a":', "cannot be read as JSON"),
    (b"\xff\xfe\x00", "cannot be read as JSON"),
    ('{"step": 1, "eval_psnr": 2}', "is not a training history"),
    ('[{"step": 1}]', "is not a training history"),
    ('[{"step": "1", "eval_psnr": 12.0}]', "is not a training history"),
    ('[{"step": 1, "eval_psnr": "12"}]', "is not a training history"),
    ("[]", "holds no evaluation yet"),
])
def test_plot_training_names_a_damaged_history(monkeypatch, capsys, tmp_path, content, message):
    plot = script("plot_training")
    path = tmp_path / "history.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    err = one_line_exit_2(capsys, monkeypatch, plot, [f"a={tmp_path}", "--out", str(tmp_path / "c.png")])
    assert err.startswith(f"error: {path} ") and message in err
    assert not (tmp_path / "c.png").exists()


@pytest.mark.fast
@pytest.mark.parametrize("runs,out,message", [
    (["x"], "c.png", "error: x is not LABEL=RUN_FOLDER"), (["=h.json"], "c.png", "error: =h.json is not LABEL="),
    (["a=h.json", "a=h.json"], "c.png", "error: the label a is given twice"),
    (["a=nowhere"], "c.png", "error: nowhere holds no history.json"),
    (["a=h.json"], ".", "error: --out . is a folder"), (["a=h.json"], "/proc/c.png", "error: --out=/proc is not writable"),
])
def test_plot_training_bad_arguments(monkeypatch, capsys, tmp_path, runs, out, message):
    plot = script("plot_training")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h.json").write_text('[{"step": 0, "eval_psnr": 9.5}, {"step": 10, "eval_psnr": 12.25}]')
    assert one_line_exit_2(capsys, monkeypatch, plot, [*runs, "--out", out]).startswith(message)


@pytest.mark.fast
def test_plot_training_reads_a_good_history(monkeypatch, capsys, tmp_path):
    plot = script("plot_training")
    (tmp_path / "h.json").write_text('[{"step": 0, "eval_psnr": 9.5}, {"step": 10, "eval_psnr": 12.25}]')
    monkeypatch.setattr(sys, "argv", ["plot_training.py", f"a={tmp_path / 'h.json'}", "--out", str(tmp_path / "c.png")])
    plot.main()
    assert "| 10 | 12.25 |" in capsys.readouterr().out and (tmp_path / "c.png").stat().st_size > 0
