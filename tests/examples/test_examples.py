"""Examples and the command line never rot: run them with tiny settings."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from astroprob import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
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


def test_every_example_is_run_by_a_test():
    # A new example without a test would rot unnoticed: each script must be named in a test.
    tests = Path(__file__).resolve().parents[1]
    text = "\n".join(p.read_text() for p in tests.rglob("test_*.py"))
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts, EXAMPLES
    assert [name for name in scripts if f'"{name}"' not in text] == []


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    status = cli.main(["demo", "--out", str(tmp_path), "--num-simulations", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("astroprob demo: error:")
    assert "num_simulations" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # checked before anything is written


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_calibration_report_example_and_calibrate_command(tmp_path, monkeypatch, capsys):
    out = tmp_path / "calibration"
    args = ["--out", str(out), "--num-simulations", "300", "--max-epochs", "2"]
    args += ["--n", "100", "--num-samples", "100", "--num-predictive", "100"]
    monkeypatch.setattr(sys, "argv", ["calibration_report.py", *args])
    runpy.run_path(str(EXAMPLES / "calibration_report.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "trained on 300 simulations" in printed
    assert "OVERALL:" in printed
    assert "theta_1" in printed
    for name in ("report.html", "report.json", "run/config.json"):
        assert (out / name).is_file(), name
    # The saved run records its task, so the command rebuilds it and calibrates again.
    html_path, json_path = tmp_path / "cli.html", tmp_path / "cli.json"
    status = cli.main(
        [
            "calibrate",
            str(out / "run"),
            "--out",
            str(html_path),
            "--json",
            str(json_path),
            "--num-simulations",
            "100",
            "--num-samples",
            "100",
        ]
    )
    assert status == 0
    assert "data:image/png;base64," in html_path.read_text()
    assert json.loads(json_path.read_text())["task"] == "two_moons"
    assert f"wrote {html_path}" in capsys.readouterr().out


def test_calibrate_command_reports_a_missing_run_in_one_line(tmp_path, capsys):
    status = cli.main(["calibrate", str(tmp_path / "nothing"), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("astroprob calibrate: error:")
    assert f"{tmp_path / 'nothing'}: no such directory; expected a run directory" in err
    assert "Traceback" not in err
