"""Examples and the command line never rot: run them with tiny settings."""

import runpy
import sys
from pathlib import Path

import pytest

from astroprob import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "args"),
    [
        (
            "gaussian_linear_npe.py",
            ["--num-simulations", "300", "--max-epochs", "2", "--num-samples", "50"],
        )
    ],
)
def test_example_runs(script, args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    assert "trained on 300 simulations" in capsys.readouterr().out


def test_demo_command_writes_its_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    status = cli.main(
        [
            "demo",
            "--out",
            str(out),
            "--num-simulations",
            "300",
            "--max-epochs",
            "2",
            "--num-samples",
            "200",
            "--no-progress",
        ]
    )
    assert status == 0
    for name in ("run/config.json", "run/weights.msgpack", "summary.ecsv", "posterior.png"):
        assert (out / name).is_file(), name
    printed = capsys.readouterr().out
    assert "theta_1_mean" in printed
    assert str(out / "posterior.png") in printed


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    status = cli.main(["demo", "--out", str(tmp_path), "--num-simulations", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("astroprob demo: error: n: expected a positive integer")
    assert "Traceback" not in err
