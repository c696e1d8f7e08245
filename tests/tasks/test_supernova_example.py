"""The supernova peak-time example runs end to end with tiny settings (slow: it trains NPE)."""

import runpy
import sys
from pathlib import Path

import pytest

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
DATA = REPO.parent / "shared" / "data" / "des_sn5yr_lowz_foundation"


@pytest.mark.slow
def test_supernova_peak_time_example(monkeypatch, capsys, tmp_path):
    assert DATA.is_dir(), f"shared test data missing: {DATA}"
    args = ["--data-dir", str(DATA), "--num-simulations", "300", "--max-epochs", "2"]
    args += ["--num-real", "3", "--num-samples", "50", "--json", str(tmp_path / "out.json")]
    monkeypatch.setattr(sys, "argv", ["supernova_peak_time.py", *args])
    runpy.run_path(str(REPO / "examples" / "supernova_peak_time.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "trained on 300 simulations" in out
    assert "over 3 Foundation SNe" in out
    assert (tmp_path / "out.json").is_file()
